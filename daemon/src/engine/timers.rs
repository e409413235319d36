//! Periodic upkeep on the executor: the write-behind of nodes' latest
//! snapshots and rollups every 2 hours, retention and
//! login-throttle pruning every hour (each once at start too), and the alert
//! engine's timer.

/// Spacing of rollup passes. History reads take the not-yet-rolled-up tail
/// from raw samples (one key lookup per sample, store::tail), so charts
/// lose nothing. The gain: a pass writes several pages per node per rollup
/// level whatever it adds, so rarer passes write less: with bucket rows,
/// 4.2 KB per snapshot every 10 minutes, 1.8 KB every 30, 1.2 KB every 60
/// (200 nodes at 30 s, docs/BENCHMARKS.md §4). Rollup blocks of the fine
/// levels span this interval.
pub const ROLLUP_EVERY: Duration = Duration::from_secs(2 * 3600);

/// Spacing of the latest snapshots' write-behind: after a crash, a node's
/// detail JSON can be this old until its next snapshot (at most one interval
/// for a node that is up; its summary comes back from raw samples at once).
/// Every 30 minutes it cost 77 B per snapshot at 200 nodes, every 2 hours
/// 19 B (docs/BENCHMARKS.md §4). A multiple of it must be ROLLUP_EVERY.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2 * 3600);

use crate::app::Shared;
use async_io::Timer;
use std::time::Duration;

/// A worker's wait: the next finished job from `done`, or `None` when
/// `wake` is poked or `wait` passes first (the worker then looks at its
/// queue again). Shared by the outbox and the check scheduler.
pub async fn next_done<T>(
    done: &async_channel::Receiver<T>,
    wake: &async_channel::Receiver<()>,
    wait: Duration,
) -> Option<T> {
    smol::future::or(
        async { done.recv().await.ok() },
        smol::future::or(
            async {
                let _ = wake.recv().await;
                None
            },
            async {
                Timer::after(wait).await;
                None
            },
        ),
    )
    .await
}

/// How long after a grid point (a multiple of FLUSH_EVERY in Unix time) the
/// timed passes run: the last bucket before it has settled by then.
const AFTER_GRID_S: i64 = crate::store::rollup::SETTLE_S + 30;

/// Rollup passes and the latest snapshots' write-behind: once at start, then
/// on a wall-clock grid. A rollup pass runs just after each multiple of
/// ROLLUP_EVERY, which is where 1-minute and 5-minute rollup blocks end
/// (store::rollup::TABLES), so each pass writes the blocks it completes
/// once, instead of rewriting half-filled ones (BENCHMARKS §4).
pub async fn rollups(shared: Shared) {
    let mut roll = true;
    loop {
        {
            let mut ctx = shared.borrow_mut();
            if roll {
                if let Err(e) = ctx.store.roll_up(crate::clock::now()) {
                    log::error!("rollup pass failed: {e}");
                }
            }
            if let Err(e) = ctx.store.flush_latest() {
                log::error!("writing latest snapshots failed: {e}");
            }
        }
        let now = crate::clock::now();
        let (at, next_rolls) = next_upkeep(now);
        Timer::after(Duration::from_secs((at - now).max(1) as u64)).await;
        roll = next_rolls;
    }
}

/// When the next write-behind runs after `now` (Unix seconds), and whether a
/// rollup pass runs with it.
pub fn next_upkeep(now: i64) -> (i64, bool) {
    let every = FLUSH_EVERY.as_secs() as i64;
    let grid = (now - AFTER_GRID_S).div_euclid(every) * every + every;
    (
        grid + AFTER_GRID_S,
        grid.rem_euclid(ROLLUP_EVERY.as_secs() as i64) == 0,
    )
}

pub async fn retention(shared: Shared) {
    loop {
        {
            let ctx = shared.borrow();
            let now = crate::clock::now();
            match ctx.store.apply_retention(now) {
                Ok(n) if n > 0 => log::info!("retention removed {n} rows"),
                Ok(_) => {}
                Err(e) => log::error!("retention pass failed: {e}"),
            }
            let keep = ctx.cfg.alert_retention_days * 86_400;
            match ctx.store.prune_alerts(now - keep) {
                Ok(n) if n > 0 => log::info!("alert retention removed {n} rows"),
                Ok(_) => {}
                Err(e) => log::error!("pruning alerts failed: {e}"),
            }
            let results_keep = ctx.cfg.check_results_days * 86_400;
            if let Err(e) = ctx
                .store
                .prune_check_results(now - results_keep, now - 400 * 86_400)
            {
                log::error!("pruning check results failed: {e}");
            }
            if let Err(e) = ctx.store.prune_silences(now - keep) {
                log::error!("pruning silences failed: {e}");
            }
            if let Err(e) = ctx
                .store
                .prune_login_failures(now - crate::api::auth::THROTTLE_WINDOW_S)
            {
                log::error!("pruning login failures failed: {e}");
            }
        }
        Timer::after(Duration::from_secs(3600)).await;
    }
}

/// Node-offline evaluation and released suppressions, every `alerts.tick_s`.
pub async fn alerts(shared: Shared) {
    loop {
        let every = {
            let mut ctx = shared.borrow_mut();
            let settings = ctx.alert_settings();
            let crate::app::Ctx { store, alerting, .. } = &mut *ctx;
            if let Err(e) = alerting.tick(store, &settings, crate::clock::now()) {
                log::error!("alert timer: {e}");
            }
            ctx.wake_outbox();
            ctx.cfg.alert_tick_s
        };
        Timer::after(Duration::from_secs(every)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_passes_run_just_after_each_even_two_hours() {
        let day = 20_000 * 86400;
        // Just after start-up at 00:03: the next upkeep is at 02:00 + 150 s.
        assert_eq!(next_upkeep(day + 180), (day + 7200 + AFTER_GRID_S, true));
        // At 01:59, the same.
        assert_eq!(next_upkeep(day + 7200 - 60), (day + 7200 + AFTER_GRID_S, true));
        // Woken at exactly that moment, it looks two hours ahead.
        assert_eq!(
            next_upkeep(day + 7200 + AFTER_GRID_S),
            (day + 14400 + AFTER_GRID_S, true)
        );
        let times: Vec<i64> = (0..12)
            .scan(day, |t, _| {
                *t = next_upkeep(*t).0;
                Some(*t)
            })
            .collect();
        assert!(times.windows(2).all(|w| w[1] - w[0] == 7200), "{times:?}");
        assert_eq!(ROLLUP_EVERY.as_secs() % FLUSH_EVERY.as_secs(), 0);
    }
}
