//! Heartbeats (cron monitoring): what a ping does to a monitor, and the
//! deadline timer. Deadlines live in a heap on the executor; one task
//! sleeps until the earliest and is woken when a ping sets an earlier one,
//! so nothing scans every heartbeat every second. A heap entry can be
//! stale (the monitor was pinged since): it is re-checked against the
//! stored state when it falls due.

use crate::app::{Ctx, Shared};
use crate::engine::alerts::rules::Severity;
use crate::engine::alerts::Condition;
use crate::store::heartbeats::{Execution, Heartbeat, NewPing};
use crate::store::Store;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Request bodies kept with a ping; longer ones are truncated and flagged.
pub const BODY_KEPT: usize = 10 * 1024;

/// What a ping says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PingKind {
    Success,
    Start,
    Fail,
    /// Recorded only; the state does not change.
    Log,
    /// 0 is a success, 1–255 a failure.
    Exit(u8),
}

pub struct Deadlines {
    heap: BinaryHeap<Reverse<(i64, i64)>>,
    wake: async_channel::Sender<()>,
}

impl Deadlines {
    pub fn new() -> (Deadlines, async_channel::Receiver<()>) {
        let (wake, rx) = async_channel::bounded(1);
        (
            Deadlines {
                heap: BinaryHeap::new(),
                wake,
            },
            rx,
        )
    }

    pub fn schedule(&mut self, hb: &Heartbeat) {
        if let Some(d) = hb.deadline() {
            let earlier = self.heap.peek().is_none_or(|Reverse((t, _))| d < *t);
            self.heap.push(Reverse((d, hb.id)));
            if earlier {
                let _ = self.wake.try_send(());
            }
        }
    }

    fn next(&self) -> Option<i64> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    fn pop_due(&mut self, now: i64) -> Vec<i64> {
        let mut due = Vec::new();
        while let Some(Reverse((t, id))) = self.heap.peek().copied() {
            if t > now {
                break;
            }
            self.heap.pop();
            due.push(id);
        }
        due.sort_unstable();
        due.dedup();
        due
    }
}

fn alert_key(id: i64) -> String {
    crate::engine::alerts::key("heartbeat", "heartbeat", &format!("hb{id}"), "")
}

fn human(secs: i64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Opens or resolves the monitor's alert to match its status.
fn sync_alert(ctx: &mut Ctx, hb: &Heartbeat, why: &str, now: i64) -> rusqlite::Result<()> {
    let settings = ctx.alert_settings();
    let down = hb.status == "down" && !hb.paused;
    let id = hb.id.to_string();
    let c = Condition {
        key: alert_key(hb.id),
        kind: "heartbeat",
        source_id: &id,
        node_id: None,
        labels: &hb.labels,
        severity: down.then_some(Severity::Critical),
        value: None,
        message: if down {
            format!("heartbeat '{}': {why}", hb.name)
        } else {
            format!("heartbeat '{}' is up again", hb.name)
        },
    };
    let Ctx { store, alerting, .. } = ctx;
    alerting.set_condition(store, &c, &settings, now)?;
    ctx.wake_outbox();
    Ok(())
}

/// Records a ping and moves the monitor: start opens an execution, success
/// and failure close it; a failure takes it down, a success brings it up.
/// Pings to a paused monitor are recorded and change nothing else.
pub fn ping(
    ctx: &mut Ctx,
    mut hb: Heartbeat,
    kind: PingKind,
    p: &NewPing,
    now: i64,
) -> rusqlite::Result<Heartbeat> {
    let old = hb.status.clone();
    let tx = ctx.store.begin()?;
    ctx.store.insert_ping(hb.id, p)?;
    let outcome = match kind {
        PingKind::Success | PingKind::Exit(0) => Some(("success", None)),
        PingKind::Fail => Some(("fail", None)),
        PingKind::Exit(code) => Some(("fail", Some(code as i64))),
        PingKind::Start | PingKind::Log => None,
    };
    if kind != PingKind::Log {
        hb.last_ping_at = Some(now);
    }
    if !hb.paused {
        if kind == PingKind::Start {
            hb.running_since = Some(now);
        }
        if let Some((outcome, code)) = outcome {
            let started = hb.running_since.take();
            ctx.store.insert_execution(
                hb.id,
                &Execution {
                    id: 0,
                    started_at: started,
                    ended_at: now,
                    outcome: outcome.into(),
                    exit_code: code.or(if let PingKind::Exit(c) = kind {
                        Some(c as i64)
                    } else {
                        None
                    }),
                    duration_ms: started.map(|s| (now - s) * 1000),
                },
            )?;
            if outcome == "success" {
                hb.status = "up".into();
                hb.last_success_at = Some(now);
            } else {
                hb.status = "down".into();
            }
        }
    }
    ctx.store.set_heartbeat_state(&hb, &old, now)?;
    tx.commit()?;
    if hb.status != old || kind == PingKind::Fail || matches!(kind, PingKind::Exit(c) if c != 0) {
        let why = match kind {
            PingKind::Exit(c) => format!("the job exited with status {c}"),
            _ => "the job reported a failure".into(),
        };
        sync_alert(ctx, &hb, &why, now)?;
    }
    ctx.deadlines.schedule(&hb);
    Ok(hb)
}

/// Pause (alerts stop, an open alert resolves) or resume (back to "new":
/// the next ping starts the clock again).
pub fn set_paused(ctx: &mut Ctx, hb: &Heartbeat, paused: bool, now: i64) -> rusqlite::Result<Heartbeat> {
    ctx.store.set_heartbeat_paused(hb.id, paused, now)?;
    if !paused && hb.paused {
        let mut fresh = hb.clone();
        fresh.paused = false;
        fresh.status = "new".into();
        fresh.running_since = None;
        ctx.store.set_heartbeat_state(&fresh, &hb.status, now)?;
    }
    let hb = ctx
        .store
        .heartbeat(hb.id)?
        .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    sync_alert(ctx, &hb, "paused", now)?;
    ctx.deadlines.schedule(&hb);
    Ok(hb)
}

/// A deadline fell due: if it still holds, the running execution timed
/// out and/or the period passed without a success.
fn expire(ctx: &mut Ctx, id: i64, now: i64) -> rusqlite::Result<()> {
    let Some(mut hb) = ctx.store.heartbeat(id)? else {
        return Ok(());
    };
    let Some(deadline) = hb.deadline() else {
        return Ok(());
    };
    if deadline > now {
        // Pinged since this entry was queued: its real deadline is later.
        ctx.deadlines.schedule(&hb);
        return Ok(());
    }
    let old = hb.status.clone();
    let mut why = format!(
        "no ping since {} (period {} + grace {})",
        hb.last_success_at
            .or(hb.last_ping_at)
            .map(crate::clock::rfc3339)
            .unwrap_or_else(|| "its creation".into()),
        human(hb.period_s),
        human(hb.grace_s)
    );
    let tx = ctx.store.begin()?;
    if let Some(start) = hb.running_since.filter(|s| s + hb.grace_s <= now) {
        ctx.store.insert_execution(
            hb.id,
            &Execution {
                id: 0,
                started_at: Some(start),
                ended_at: now,
                outcome: "timeout".into(),
                exit_code: None,
                duration_ms: Some((now - start) * 1000),
            },
        )?;
        hb.running_since = None;
        why = format!(
            "started at {} and did not finish within the grace time ({})",
            crate::clock::rfc3339(start),
            human(hb.grace_s)
        );
    }
    hb.status = "down".into();
    ctx.store.set_heartbeat_state(&hb, &old, now)?;
    tx.commit()?;
    sync_alert(ctx, &hb, &why, now)?;
    ctx.deadlines.schedule(&hb);
    Ok(())
}

/// Every monitor's deadline, at start-up.
pub fn schedule_all(store: &Store, d: &mut Deadlines) -> rusqlite::Result<()> {
    for hb in store.heartbeats()? {
        d.schedule(&hb);
    }
    Ok(())
}

/// The deadline task.
pub async fn run(shared: Shared, wake: async_channel::Receiver<()>) {
    {
        let mut ctx = shared.borrow_mut();
        let Ctx { store, deadlines, .. } = &mut *ctx;
        if let Err(e) = schedule_all(store, deadlines) {
            log::error!("loading heartbeat deadlines: {e}");
        }
    }
    loop {
        let next = shared.borrow().deadlines.next();
        let wait = match next {
            Some(t) => Duration::from_secs((t - crate::clock::now()).clamp(0, 3600) as u64),
            None => Duration::from_secs(3600),
        };
        smol::future::or(
            async {
                let _ = wake.recv().await;
            },
            async {
                async_io::Timer::after(wait).await;
            },
        )
        .await;
        let now = crate::clock::now();
        let mut ctx = shared.borrow_mut();
        for id in ctx.deadlines.pop_due(now) {
            if let Err(e) = expire(&mut ctx, id, now) {
                log::error!("heartbeat {id} deadline: {e}");
            }
        }
    }
}

/// Daily uptime (share of each UTC day spent up, of the time it was
/// monitored) for the last `days` days, oldest first.
pub fn daily_uptime(
    store: &Store,
    hb: &Heartbeat,
    days: i64,
    now: i64,
) -> rusqlite::Result<Vec<(i64, Option<f64>)>> {
    let today = now - now.rem_euclid(86_400);
    let from = today - (days - 1) * 86_400;
    let (mut status, flips) = store.flips(hb.id, from)?;
    let mut out = Vec::with_capacity(days as usize);
    let mut fi = 0;
    for d in 0..days {
        // Today counts up to and including the current second.
        let (start, end) = (from + d * 86_400, (from + (d + 1) * 86_400).min(now + 1));
        let (mut up, mut counted, mut t) = (0i64, 0i64, start);
        while t < end {
            let next = flips.get(fi).map(|f| f.0).filter(|at| *at < end).unwrap_or(end);
            if let Some(s) = status.as_deref() {
                if s == "up" || s == "down" {
                    counted += next - t;
                    if s == "up" {
                        up += next - t;
                    }
                }
            }
            t = next;
            if t < end {
                status = Some(flips[fi].1.clone());
                fi += 1;
            }
        }
        out.push((start, super::percent(up, counted)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::heartbeats::HeartbeatFields;

    fn fields(period_s: i64, grace_s: i64) -> HeartbeatFields {
        HeartbeatFields {
            name: "job".into(),
            period_s,
            grace_s,
            labels: Default::default(),
        }
    }

    #[test]
    fn deadline_is_the_earlier_of_the_period_and_a_running_start() {
        let s = Store::memory();
        let id = s.insert_heartbeat("u", &fields(3600, 60), 0).unwrap();
        let mut hb = s.heartbeat(id).unwrap().unwrap();
        assert_eq!(hb.deadline(), None, "new: no deadline");
        hb.status = "up".into();
        hb.last_success_at = Some(1000);
        assert_eq!(hb.deadline(), Some(1000 + 3600 + 60));
        hb.running_since = Some(2000);
        assert_eq!(hb.deadline(), Some(2060));
        hb.status = "down".into();
        assert_eq!(hb.deadline(), Some(2060), "a run can still time out while down");
        hb.running_since = None;
        assert_eq!(hb.deadline(), None, "down: no further alerts");
        hb.status = "up".into();
        hb.paused = true;
        assert_eq!(hb.deadline(), None);
    }

    #[test]
    fn daily_uptime_weighs_time_up_against_time_monitored() {
        let s = Store::memory();
        let id = s.insert_heartbeat("u", &fields(60, 0), 0).unwrap();
        let day = 86_400 * 20_000;
        let mut hb = s.heartbeat(id).unwrap().unwrap();
        // Up at 06:00, down 12:00–18:00, up again: 12 of 18 monitored hours.
        for (at, st, old) in [(6, "up", "new"), (12, "down", "up"), (18, "up", "down")] {
            hb.status = st.into();
            s.set_heartbeat_state(&hb, old, day + at * 3600).unwrap();
        }
        let rows = daily_uptime(&s, &hb, 2, day + 86_400 + 12 * 3600).unwrap();
        assert_eq!(rows[0].0, day);
        assert_eq!(rows[0].1, Some(66.67));
        assert_eq!(rows[1].1, Some(100.0), "all of the next day so far");
    }
}
