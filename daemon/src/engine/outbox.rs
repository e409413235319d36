//! The outbox worker: sends pending deliveries, records every attempt and
//! schedules retries with exponential backoff and jitter. Rows are written
//! before anything is sent (engine::alerts), so a restart resumes exactly
//! what was pending; a delivery is marked delivered in the same step that
//! records its successful attempt, so it is not sent again.
//!
//! Sending happens on the blocking pool with a timeout, one delivery per
//! channel at a time (messages to one receiver stay in order) and a few
//! channels at once: a receiver that never answers holds one worker
//! thread until its timeout, never the executor or the other channels.

use crate::app::Shared;
use crate::engine::notify::{self, Attempt, Event};
use crate::store::channels::Delivery;
use std::collections::HashSet;
use std::time::Duration;

/// Channels sending at once.
const PARALLEL: usize = 8;

/// The wait before retry number `attempts` (1-based), with ±20% jitter.
pub fn backoff(attempts: i64, base_s: i64, max_s: i64) -> i64 {
    let exp = attempts.clamp(1, 30) - 1;
    let plain = base_s.saturating_mul(1i64 << exp).min(max_s);
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        u16::from_le_bytes(b) as f64 / u16::MAX as f64
    } else {
        0.5
    };
    ((plain as f64) * (0.8 + 0.4 * r)).round().max(1.0) as i64
}

struct Done {
    delivery: i64,
    channel: i64,
    attempts: i64,
    attempt: Attempt,
}

pub async fn run(shared: Shared, wake: async_channel::Receiver<()>) {
    let (done_tx, done_rx) = async_channel::unbounded::<Done>();
    let mut busy: HashSet<i64> = HashSet::new();
    loop {
        // Start what is due and has a free channel.
        let next_due = {
            let ctx = shared.borrow();
            let now = crate::clock::now();
            let timeout = Duration::from_secs(ctx.cfg.notify_timeout_s);
            match ctx.store.due_deliveries(now, 200) {
                Ok(due) => {
                    for d in due {
                        if busy.len() >= PARALLEL {
                            break;
                        }
                        if busy.contains(&d.channel_id) {
                            continue;
                        }
                        busy.insert(d.channel_id);
                        start(&ctx, d, timeout, done_tx.clone());
                    }
                }
                Err(e) => log::error!("reading the outbox: {e}"),
            }
            ctx.store.next_delivery_due().unwrap_or(None)
        };
        let wait = match next_due {
            // Something due but its channel is busy: its completion wakes us.
            Some(t) => Duration::from_secs((t - crate::clock::now()).clamp(1, 60) as u64),
            None => Duration::from_secs(60),
        };
        let done = super::timers::next_done(&done_rx, &wake, wait).await;
        if let Some(d) = done {
            busy.remove(&d.channel);
            finish(&shared, d);
            while let Ok(d) = done_rx.try_recv() {
                busy.remove(&d.channel);
                finish(&shared, d);
            }
        }
    }
}

/// Renders a delivery and sends it off the executor thread.
fn start(ctx: &crate::app::Ctx, d: Delivery, timeout: Duration, done: async_channel::Sender<Done>) {
    let (delivery, channel, attempts) = (d.id, d.channel_id, d.attempts);
    let fail = |error: String| Done {
        delivery,
        channel,
        attempts,
        attempt: Attempt {
            ok: false,
            error: Some(error),
            ..Default::default()
        },
    };
    let rendered = match ctx.store.channel(channel) {
        Ok(Some(ch)) if !ch.enabled => Err(fail("the channel was disabled before delivery".into())),
        Ok(Some(ch)) => match serde_json::from_str::<Event>(&d.payload) {
            Ok(ev) => notify::render(&ch.kind, &ch.config, &ev).map_err(|e| fail(format!("rendering: {e}"))),
            Err(e) => Err(fail(format!("stored event unreadable: {e}"))),
        },
        Ok(None) => Err(fail("the channel no longer exists".into())),
        Err(e) => Err(fail(format!("reading the channel: {e}"))),
    };
    match rendered {
        Ok(out) => {
            smol::unblock(move || {
                let attempt = notify::deliver(&out, timeout);
                let _ = done.send_blocking(Done {
                    delivery,
                    channel,
                    attempts,
                    attempt,
                });
            })
            .detach();
        }
        Err(d) => {
            let _ = done.try_send(d);
        }
    }
}

fn finish(shared: &Shared, d: Done) {
    let mut ctx = shared.borrow_mut();
    let now = crate::clock::now();
    let tries = d.attempts + 1;
    let permanent = d.attempt.status_code.is_none()
        && d.attempt.error.as_deref().is_some_and(|e| {
            e.starts_with("the channel") || e.starts_with("rendering") || e.starts_with("stored event")
        });
    let next = if d.attempt.ok || permanent || tries >= ctx.cfg.notify_max_attempts {
        None
    } else {
        Some(now + backoff(tries, ctx.cfg.notify_retry_base_s, ctx.cfg.notify_retry_max_s))
    };
    let a = &d.attempt;
    if !a.ok {
        log::warn!(
            "delivery {} to channel {} failed (attempt {tries}): {}{}",
            d.delivery,
            d.channel,
            a.error.as_deref().unwrap_or("unknown error"),
            if next.is_some() {
                "; will retry"
            } else {
                "; giving up"
            }
        );
    }
    if let Err(e) = ctx.store.record_attempt(
        d.delivery,
        now,
        a.ok,
        a.status_code,
        a.error.as_deref(),
        a.duration_ms,
        next,
    ) {
        log::error!("recording delivery {}: {e}", d.delivery);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        for (n, plain) in [(1, 10), (2, 20), (3, 40), (4, 80)] {
            let b = backoff(n, 10, 3600);
            assert!((plain * 8 / 10..=plain * 12 / 10).contains(&b), "retry {n}: {b}");
        }
        assert!(backoff(30, 10, 3600) <= 4320);
        assert!(backoff(1, 1, 1) >= 1);
    }
}
