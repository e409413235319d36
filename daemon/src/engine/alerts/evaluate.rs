//! The per-signal state machine: hysteresis, `for` durations, escalation
//! and the flapping guard. Pure: it reads a value and the open alert's
//! severity and says what should happen; the engine writes it down.

use super::rules::{Effective, Severity};
use std::collections::VecDeque;

/// What the engine remembers about one signal between evaluations (in
/// memory: after a restart a pending `for` starts over, which only delays).
#[derive(Clone, Debug, Default)]
pub struct Track {
    /// Since when the value has been at or above each level's trigger
    /// (warning, critical), continuously.
    hold_since: [Option<i64>; 2],
    /// Fire and resolve times inside the flapping window.
    transitions: VecDeque<i64>,
    /// While flapping: since when the value has been clear.
    clear_since: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlapGuard {
    /// More transitions than this inside `window_s` means flapping.
    pub max_transitions: usize,
    pub window_s: i64,
}

impl Default for FlapGuard {
    fn default() -> Self {
        FlapGuard {
            max_transitions: 4,
            window_s: 600,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    Nothing,
    Fire(Severity),
    /// Escalation or de-escalation of the open alert.
    Change(Severity),
    Resolve,
    /// Would have resolved, but the signal flaps: the alert stays open and
    /// is marked flapping (notified once).
    StartFlapping,
}

fn idx(s: Severity) -> usize {
    match s {
        Severity::Warning => 0,
        Severity::Critical => 1,
    }
}

/// One evaluation at time `ts` (the snapshot's time, so backdated test
/// data and real agents behave the same).
pub fn step(
    eff: &Effective,
    open: Option<Severity>,
    flapping: bool,
    track: &mut Track,
    value: f64,
    ts: i64,
    guard: FlapGuard,
) -> Decision {
    for s in [Severity::Warning, Severity::Critical] {
        let above = eff.level(s).is_some_and(|l| value >= l.trigger);
        let slot = &mut track.hold_since[idx(s)];
        if above {
            slot.get_or_insert(ts);
        } else {
            *slot = None;
        }
    }
    let ready = |s: Severity| track.hold_since[idx(s)].is_some_and(|t| ts - t >= eff.for_s);
    // Hysteresis: an open level holds until the value drops below its clear.
    let holds = |s: Severity| eff.level(s).is_some_and(|l| value >= l.clear);
    let target =
        if ready(Severity::Critical) || (open == Some(Severity::Critical) && holds(Severity::Critical)) {
            Some(Severity::Critical)
        } else if ready(Severity::Warning) || (open.is_some() && holds(Severity::Warning)) {
            Some(Severity::Warning)
        } else {
            None
        };
    let cutoff = ts - guard.window_s;
    while track.transitions.front().is_some_and(|t| *t < cutoff) {
        track.transitions.pop_front();
    }
    match (open, target) {
        (None, None) => Decision::Nothing,
        (None, Some(s)) => {
            track.transitions.push_back(ts);
            track.clear_since = None;
            Decision::Fire(s)
        }
        (Some(o), Some(s)) => {
            track.clear_since = None;
            if o == s {
                Decision::Nothing
            } else {
                Decision::Change(s)
            }
        }
        (Some(_), None) if flapping => {
            // A flapping alert resolves once the signal has stayed clear for a whole window.
            let since = *track.clear_since.get_or_insert(ts);
            if ts - since >= guard.window_s {
                track.transitions.clear();
                track.clear_since = None;
                Decision::Resolve
            } else {
                Decision::Nothing
            }
        }
        (Some(_), None) => {
            if track.transitions.len() + 1 > guard.max_transitions {
                track.clear_since = Some(ts);
                Decision::StartFlapping
            } else {
                track.transitions.push_back(ts);
                Decision::Resolve
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rules::{effective, Severity};
    use super::*;
    use std::collections::BTreeMap;

    fn cpu(for_s: i64) -> Effective {
        let mut e = effective(&[], "n", &BTreeMap::new())
            .into_iter()
            .find(|e| e.metric == "cpu")
            .unwrap();
        e.for_s = for_s; // defaults: warning 80/75, critical 95/90
        e
    }

    /// Runs values one second apart; returns the decisions.
    fn run(eff: &Effective, values: &[f64]) -> Vec<Decision> {
        let mut track = Track::default();
        let mut open = None;
        let mut flapping = false;
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let d = step(
                eff,
                open,
                flapping,
                &mut track,
                *v,
                i as i64,
                FlapGuard::default(),
            );
            match d {
                Decision::Fire(s) | Decision::Change(s) => open = Some(s),
                Decision::Resolve => {
                    open = None;
                    flapping = false
                }
                Decision::StartFlapping => flapping = true,
                Decision::Nothing => {}
            }
            out.push(d);
        }
        out
    }

    use Decision::*;
    use Severity::*;

    #[test]
    fn hysteresis_does_not_refire_between_clear_and_trigger() {
        let d = run(&cpu(0), &[85.0, 77.0, 82.0, 76.0, 79.0, 74.0]);
        assert_eq!(
            d,
            vec![Fire(Warning), Nothing, Nothing, Nothing, Nothing, Resolve]
        );
    }

    #[test]
    fn a_short_spike_does_not_fire_under_for() {
        let d = run(&cpu(3), &[99.0, 99.0, 50.0, 99.0, 99.0, 99.0, 99.0]);
        assert_eq!(
            d,
            vec![
                Nothing,
                Nothing,
                Nothing,
                Nothing,
                Nothing,
                Nothing,
                Fire(Critical)
            ]
        );
    }

    #[test]
    fn escalation_and_deescalation_update_the_open_alert() {
        let d = run(&cpu(0), &[85.0, 96.0, 92.0, 89.0, 76.0, 70.0]);
        assert_eq!(
            d,
            vec![
                Fire(Warning),
                Change(Critical),
                Nothing,
                Change(Warning),
                Nothing,
                Resolve
            ]
        );
    }

    #[test]
    fn flapping_holds_the_alert_open_until_clear_for_a_window() {
        let guard = FlapGuard::default();
        let eff = cpu(0);
        let mut values = vec![];
        for _ in 0..4 {
            values.extend([99.0, 10.0]);
        }
        let d = run(&eff, &values);
        assert_eq!(
            d,
            vec![
                Fire(Critical),
                Resolve,
                Fire(Critical),
                Resolve,
                Fire(Critical),
                StartFlapping,
                Nothing,
                Nothing
            ]
        );
        // Clear for a whole window: resolves once.
        let mut track = Track::default();
        let mut last = Nothing;
        for t in 0..=guard.window_s {
            last = step(&eff, Some(Critical), true, &mut track, 10.0, t, guard);
            if t < guard.window_s {
                assert_eq!(last, Nothing);
            }
        }
        assert_eq!(last, Resolve);
    }
}
