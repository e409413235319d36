//! Maintenance windows and silences: what they look like, validation, and
//! whether one holds back an alert's notifications at a given time.
//! Windows are about *when* (a one-off span or a weekly slot, for all nodes
//! or a selection); silences are about *what* (matchers) until they expire.

use crate::http::ApiError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weekly {
    pub days: Vec<String>,
    /// "HH:MM", local to `utc_offset`.
    pub from: String,
    pub to: String,
    #[serde(default = "zero_offset")]
    pub utc_offset: String,
}

fn zero_offset() -> String {
    "+00:00".into()
}

#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub id: i64,
    pub name: String,
    #[serde(serialize_with = "crate::api::ser_time_opt")]
    pub start: Option<i64>,
    #[serde(serialize_with = "crate::api::ser_time_opt")]
    pub end: Option<i64>,
    pub weekly: Option<Weekly>,
    pub nodes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub created_by: String,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub updated_at: i64,
}

/// A window from a request.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowInput {
    pub name: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub weekly: Option<Weekly>,
    pub nodes: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// The validated fields of a window.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowFields {
    pub name: String,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub weekly: Option<Weekly>,
    pub nodes: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

fn hhmm(field: &str, s: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::field(
            field,
            format!("'{s}' is not a time of day as HH:MM (00:00 to 23:59)"),
        )
    };
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// "+01:00" / "-05:30" / "Z" → seconds east of UTC.
fn offset_s(field: &str, s: &str) -> Result<i64, ApiError> {
    if s == "Z" {
        return Ok(0);
    }
    let bad = || ApiError::field(field, format!("'{s}' is not a UTC offset like +01:00 or -05:30"));
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let minutes = hhmm(field, rest).map_err(|_| bad())?;
    if minutes > 14 * 60 {
        return Err(bad());
    }
    Ok(sign * minutes * 60)
}

impl Weekly {
    fn validate(&self) -> Result<(), ApiError> {
        if self.days.is_empty() {
            return Err(ApiError::field(
                "weekly.days",
                "must name at least one day (mon … sun)",
            ));
        }
        for (i, d) in self.days.iter().enumerate() {
            if !DAYS.contains(&d.as_str()) {
                return Err(ApiError::field(
                    &format!("weekly.days[{i}]"),
                    format!("'{d}' is not one of {}", DAYS.join(", ")),
                ));
            }
        }
        let (from, to) = (hhmm("weekly.from", &self.from)?, hhmm("weekly.to", &self.to)?);
        if from == to {
            return Err(ApiError::field("weekly.to", "must differ from 'from'"));
        }
        offset_s("weekly.utc_offset", &self.utc_offset)?;
        Ok(())
    }

    /// Whether `t` (Unix seconds) falls in the slot. A slot whose `to` is
    /// before its `from` runs past midnight into the next day.
    pub fn active_at(&self, t: i64) -> bool {
        let (Ok(from), Ok(to), Ok(off)) = (
            hhmm("", &self.from),
            hhmm("", &self.to),
            offset_s("", &self.utc_offset),
        ) else {
            return false;
        };
        let local = t + off;
        let minute = local.rem_euclid(86_400) / 60;
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        let day = ((local.div_euclid(86_400) + 3).rem_euclid(7)) as usize;
        let has = |d: usize| self.days.iter().any(|x| x == DAYS[d]);
        if from < to {
            has(day) && minute >= from && minute < to
        } else {
            (has(day) && minute >= from) || (has((day + 6) % 7) && minute < to)
        }
    }
}

fn check_selector(
    nodes: &[String],
    labels: &BTreeMap<String, String>,
    node_exists: &dyn Fn(&str) -> bool,
) -> Result<(), ApiError> {
    if nodes.len() > 1000 {
        return Err(ApiError::field("nodes", "at most 1000 nodes"));
    }
    for (i, n) in nodes.iter().enumerate() {
        if !node_exists(n) {
            return Err(ApiError::field(&format!("nodes[{i}]"), format!("no node '{n}'")));
        }
    }
    for (k, v) in labels {
        crate::api::check_name("labels", k, 64)?;
        if v.len() > 200 {
            return Err(ApiError::field(
                &format!("labels.{k}"),
                "must be at most 200 bytes",
            ));
        }
    }
    Ok(())
}

impl WindowInput {
    pub fn apply(
        self,
        base: Option<&WindowFields>,
        node_exists: &dyn Fn(&str) -> bool,
    ) -> Result<WindowFields, ApiError> {
        let name = match (&self.name, base) {
            (Some(n), _) => crate::api::check_name("name", n, 100)?,
            (None, Some(b)) => b.name.clone(),
            (None, None) => return Err(ApiError::field("name", "is required")),
        };
        let time = |field: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
            v.as_deref()
                .map(|s| crate::clock::parse_time_param(s).map_err(|e| ApiError::field(field, e)))
                .transpose()
        };
        let (mut start, mut end, mut weekly) = match base {
            Some(b) => (b.start, b.end, b.weekly.clone()),
            None => (None, None, None),
        };
        if self.start.is_some() || self.end.is_some() {
            start = time("start", &self.start)?.or(start);
            end = time("end", &self.end)?.or(end);
            weekly = None;
        }
        if let Some(w) = self.weekly {
            if self.start.is_some() || self.end.is_some() {
                return Err(ApiError::field(
                    "weekly",
                    "give either start/end (one-off) or weekly, not both",
                ));
            }
            w.validate()?;
            weekly = Some(w);
            start = None;
            end = None;
        }
        if weekly.is_none() {
            match (start, end) {
                (None, _) => return Err(ApiError::field("start", "is required (or give 'weekly')")),
                (_, None) => return Err(ApiError::field("end", "is required (or give 'weekly')")),
                (Some(s), Some(e)) if e <= s => {
                    return Err(ApiError::field("end", "must be after 'start'"));
                }
                _ => {}
            }
        }
        let nodes = self.nodes.or(base.map(|b| b.nodes.clone())).unwrap_or_default();
        let labels = self.labels.or(base.map(|b| b.labels.clone())).unwrap_or_default();
        check_selector(&nodes, &labels, node_exists)?;
        Ok(WindowFields {
            name,
            start,
            end,
            weekly,
            nodes,
            labels,
        })
    }
}

impl Window {
    pub fn active_at(&self, t: i64) -> bool {
        match (&self.weekly, self.start, self.end) {
            (Some(w), _, _) => w.active_at(t),
            (None, Some(s), Some(e)) => s <= t && t < e,
            _ => false,
        }
    }
    /// Empty selection: every node.
    pub fn covers(&self, node_id: Option<&str>, labels: &BTreeMap<String, String>) -> bool {
        if self.nodes.is_empty() && self.labels.is_empty() {
            return true;
        }
        let by_node = node_id.is_some_and(|n| self.nodes.iter().any(|x| x == n));
        let by_label = !self.labels.is_empty() && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v));
        by_node || by_label
    }
}

/// What a silence matches; absent matchers match anything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matchers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Silence {
    pub id: i64,
    pub matchers: Matchers,
    pub comment: String,
    pub created_by: String,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub starts_at: i64,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub expires_at: i64,
    /// "active" | "pending" | "expired", at the time of the request.
    pub state: &'static str,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceInput {
    #[serde(default)]
    pub matchers: Matchers,
    pub comment: Option<String>,
    pub starts_at: Option<String>,
    pub expires_at: Option<String>,
    /// Instead of expires_at: seconds from starts_at.
    pub duration_s: Option<i64>,
}

/// Longest silence: 90 days. Anything longer is a disabled rule in disguise.
pub const MAX_SILENCE_S: i64 = 90 * 86_400;

impl SilenceInput {
    /// Validated (matchers, comment, starts_at, expires_at).
    pub fn validate(
        self,
        now: i64,
        node_exists: &dyn Fn(&str) -> bool,
    ) -> Result<(Matchers, String, i64, i64), ApiError> {
        let m = self.matchers;
        if m.node.is_none() && m.labels.is_empty() && m.metric.is_none() && m.severity.is_none() {
            return Err(ApiError::field(
                "matchers",
                "needs at least one of node, labels, metric, severity (a silence of everything is a maintenance window)",
            ));
        }
        if let Some(n) = &m.node {
            if !node_exists(n) {
                return Err(ApiError::field("matchers.node", format!("no node '{n}'")));
            }
        }
        if let Some(x) = &m.metric {
            if crate::engine::alerts::rules::metric(x).is_none()
                && !crate::engine::alerts::KINDS.contains(&x.as_str())
            {
                return Err(ApiError::field(
                    "matchers.metric",
                    format!("unknown metric '{x}'"),
                ));
            }
        }
        if let Some(s) = &m.severity {
            if crate::engine::alerts::rules::Severity::parse(s).is_none() {
                return Err(ApiError::field(
                    "matchers.severity",
                    "must be 'warning' or 'critical'",
                ));
            }
        }
        check_selector(&[], &m.labels, node_exists).map_err(|e| {
            ApiError::new(
                e.status,
                e.code,
                e.message.replacen("field 'labels", "field 'matchers.labels", 1),
            )
        })?;
        let comment = crate::api::check_name("comment", self.comment.as_deref().unwrap_or(""), 500)?;
        let time =
            |field: &str, v: &str| crate::clock::parse_time_param(v).map_err(|e| ApiError::field(field, e));
        let starts = match &self.starts_at {
            Some(s) => time("starts_at", s)?,
            None => now,
        };
        let expires = match (&self.expires_at, self.duration_s) {
            (Some(_), Some(_)) => {
                return Err(ApiError::field(
                    "duration_s",
                    "give expires_at or duration_s, not both",
                ))
            }
            (Some(e), None) => time("expires_at", e)?,
            (None, Some(d)) if d > 0 => starts.saturating_add(d),
            (None, Some(_)) => return Err(ApiError::field("duration_s", "must be > 0")),
            (None, None) => return Err(ApiError::field("expires_at", "is required (or give duration_s)")),
        };
        if expires <= starts {
            return Err(ApiError::field("expires_at", "must be after starts_at"));
        }
        if expires <= now {
            return Err(ApiError::field("expires_at", "is in the past"));
        }
        if expires - starts > MAX_SILENCE_S {
            return Err(ApiError::field("expires_at", "a silence lasts at most 90 days"));
        }
        Ok((m, comment, starts, expires))
    }
}

impl Silence {
    pub fn state_at(starts_at: i64, expires_at: i64, t: i64) -> &'static str {
        if t >= expires_at {
            "expired"
        } else if t < starts_at {
            "pending"
        } else {
            "active"
        }
    }
    pub fn matches(&self, t: i64, subject: &Subject) -> bool {
        let m = &self.matchers;
        self.starts_at <= t
            && t < self.expires_at
            && m.node.as_deref().is_none_or(|n| subject.node_id == Some(n))
            && m.labels.iter().all(|(k, v)| subject.labels.get(k) == Some(v))
            && m.metric
                .as_deref()
                .is_none_or(|x| x == subject.metric || x == subject.kind)
            && m.severity.as_deref().is_none_or(|s| s == subject.severity)
    }
}

/// The alert being considered.
pub struct Subject<'a> {
    pub node_id: Option<&'a str>,
    pub labels: &'a BTreeMap<String, String>,
    pub kind: &'a str,
    pub metric: &'a str,
    pub severity: &'a str,
}

/// "maintenance:<id>" or "silence:<id>" when something holds the alert back.
pub fn suppressed_by(windows: &[Window], silences: &[Silence], t: i64, s: &Subject) -> Option<String> {
    if let Some(w) = windows
        .iter()
        .find(|w| w.active_at(t) && w.covers(s.node_id, s.labels))
    {
        return Some(format!("maintenance:{}", w.id));
    }
    silences
        .iter()
        .find(|x| x.matches(t, s))
        .map(|x| format!("silence:{}", x.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekly(days: &[&str], from: &str, to: &str, off: &str) -> Weekly {
        Weekly {
            days: days.iter().map(|d| d.to_string()).collect(),
            from: from.into(),
            to: to.into(),
            utc_offset: off.into(),
        }
    }

    // 2026-12-05 is a Saturday.
    const SAT_0000_UTC: i64 = 1_796_428_800;

    #[test]
    fn weekly_slot_with_offset_and_past_midnight() {
        assert_eq!(crate::clock::rfc3339(SAT_0000_UTC), "2026-12-05T00:00:00Z");
        let w = weekly(&["sat"], "02:00", "04:00", "+01:00");
        // 02:30 local is 01:30 UTC.
        assert!(w.active_at(SAT_0000_UTC + 90 * 60));
        assert!(!w.active_at(SAT_0000_UTC + 30 * 60)); // 01:30 local
        assert!(!w.active_at(SAT_0000_UTC + 7 * 86_400 - 86_400 + 90 * 60)); // Friday
        let night = weekly(&["fri"], "22:00", "02:00", "+00:00");
        assert!(night.active_at(SAT_0000_UTC + 3600)); // Sat 01:00, started Friday
        assert!(!night.active_at(SAT_0000_UTC + 3 * 3600));
        assert!(night.active_at(SAT_0000_UTC - 3600)); // Fri 23:00
    }

    #[test]
    fn window_validation_names_fields() {
        let none = |_: &str| true;
        let e = WindowInput {
            name: Some("x".into()),
            weekly: Some(weekly(&["sunday"], "02:00", "04:00", "+01:00")),
            ..Default::default()
        }
        .apply(None, &none)
        .unwrap_err();
        assert!(e.message.contains("weekly.days[0]"), "{}", e.message);
        let e = WindowInput {
            name: Some("x".into()),
            start: Some("2026-01-02T00:00:00Z".into()),
            end: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        }
        .apply(None, &none)
        .unwrap_err();
        assert!(e.message.contains("'end'"), "{}", e.message);
        let e = WindowInput {
            name: Some("x".into()),
            weekly: Some(weekly(&["mon"], "25:00", "04:00", "+01:00")),
            ..Default::default()
        }
        .apply(None, &none)
        .unwrap_err();
        assert!(e.message.contains("weekly.from"), "{}", e.message);
    }

    #[test]
    fn silence_matchers() {
        let s = Silence {
            id: 1,
            matchers: Matchers {
                node: Some("n1".into()),
                metric: Some("disk".into()),
                ..Default::default()
            },
            comment: "c".into(),
            created_by: "a".into(),
            created_at: 0,
            starts_at: 100,
            expires_at: 200,
            state: "active",
        };
        let labels = BTreeMap::new();
        let sub = |node, metric| Subject {
            node_id: Some(node),
            labels: &labels,
            kind: "metric",
            metric,
            severity: "warning",
        };
        assert!(s.matches(150, &sub("n1", "disk")));
        assert!(!s.matches(150, &sub("n2", "disk")));
        assert!(!s.matches(150, &sub("n1", "cpu")));
        assert!(!s.matches(200, &sub("n1", "disk")), "expired at expires_at");
    }
}
