//! What an alert rule can watch, the built-in defaults, validation of a rule
//! from a request, and the merge that gives each node its effective
//! thresholds: node scope over label scope over global over defaults, field
//! by field, so a node rule that only sets `critical` keeps the inherited
//! `warning`.

use crate::http::ApiError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One severity's thresholds. Metrics rise: the level fires at
/// `value >= trigger` and clears only at `value < clear` (hysteresis).
/// A trigger of -1 disables the level.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub trigger: f64,
    pub clear: f64,
}

pub const DISABLED: f64 = -1.0;

impl Level {
    pub const fn new(trigger: f64, clear: f64) -> Level {
        Level { trigger, clear }
    }
    pub fn enabled(&self) -> bool {
        self.trigger != DISABLED
    }
}

/// A watchable signal.
pub struct MetricDef {
    pub name: &'static str,
    pub unit: &'static str,
    /// Percentages are bounded to 0–100.
    pub percent: bool,
    /// One alert per disk mount rather than one per node.
    pub per_instance: bool,
    pub warning: Option<Level>,
    pub critical: Option<Level>,
    pub for_s: i64,
    pub help: &'static str,
}

const fn m(
    name: &'static str,
    unit: &'static str,
    percent: bool,
    warning: Option<Level>,
    critical: Option<Level>,
    for_s: i64,
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        unit,
        percent,
        per_instance: false,
        warning,
        critical,
        for_s,
        help,
    }
}

/// The catalog. Defaults are chosen so a fresh install alerts on what a
/// homelab owner would want to hear about and stays quiet otherwise: short
/// CPU spikes need a minute, a full disk does not wait.
pub static METRICS: &[MetricDef] = &[
    m(
        "cpu",
        "%",
        true,
        Some(Level::new(80.0, 75.0)),
        Some(Level::new(95.0, 90.0)),
        60,
        "busy share of all cores",
    ),
    m(
        "memory",
        "%",
        true,
        Some(Level::new(85.0, 80.0)),
        Some(Level::new(95.0, 90.0)),
        60,
        "used memory",
    ),
    m(
        "swap",
        "%",
        true,
        Some(Level::new(50.0, 45.0)),
        Some(Level::new(80.0, 75.0)),
        60,
        "used swap",
    ),
    MetricDef {
        per_instance: true,
        ..m(
            "disk",
            "%",
            true,
            Some(Level::new(80.0, 75.0)),
            Some(Level::new(90.0, 85.0)),
            0,
            "used space, per mount",
        )
    },
    m(
        "load",
        "",
        false,
        None,
        None,
        120,
        "1-minute load average (no default: it depends on the core count)",
    ),
    m(
        "load_per_core",
        "",
        false,
        Some(Level::new(1.5, 1.2)),
        Some(Level::new(3.0, 2.5)),
        120,
        "1-minute load divided by the core count",
    ),
    m(
        "temperature",
        "°C",
        false,
        Some(Level::new(75.0, 70.0)),
        Some(Level::new(85.0, 80.0)),
        60,
        "hottest sensor",
    ),
    m(
        "net_rx",
        "B/s",
        false,
        None,
        None,
        60,
        "received bytes per second, all interfaces",
    ),
    m(
        "net_tx",
        "B/s",
        false,
        None,
        None,
        60,
        "sent bytes per second, all interfaces",
    ),
    m(
        "node_offline",
        "intervals",
        false,
        None,
        Some(Level::new(3.0, 1.0)),
        0,
        "intervals since the node's last snapshot",
    ),
];

pub fn metric(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|d| d.name == name)
}

/// Where a rule applies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

impl Scope {
    pub fn kind(&self) -> &'static str {
        if self.node.is_some() {
            "node"
        } else if self.labels.is_some() {
            "labels"
        } else {
            "global"
        }
    }
    /// Higher wins in the merge.
    fn rank(&self) -> (u8, usize) {
        match (&self.node, &self.labels) {
            (Some(_), _) => (3, 0),
            (None, Some(l)) => (2, l.len()),
            (None, None) => (1, 0),
        }
    }
    pub fn matches(&self, node_id: &str, labels: &BTreeMap<String, String>) -> bool {
        if let Some(n) = &self.node {
            return n == node_id;
        }
        if let Some(sel) = &self.labels {
            return sel.iter().all(|(k, v)| labels.get(k) == Some(v));
        }
        true
    }
}

/// A rule as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    pub id: i64,
    pub name: String,
    pub metric: String,
    pub scope: Scope,
    pub warning: Option<Level>,
    pub critical: Option<Level>,
    pub for_s: Option<i64>,
    pub enabled: bool,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub updated_at: i64,
}

/// A rule from a request body (create; PATCH merges into the stored rule first).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    pub name: Option<String>,
    pub metric: Option<String>,
    #[serde(default)]
    pub scope: Option<Scope>,
    /// `null` removes the level from this rule (inherit).
    #[serde(default, deserialize_with = "double_option")]
    pub warning: Option<Option<LevelInput>>,
    #[serde(default, deserialize_with = "double_option")]
    pub critical: Option<Option<LevelInput>>,
    #[serde(default, deserialize_with = "double_option")]
    pub for_s: Option<Option<i64>>,
    pub enabled: Option<bool>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelInput {
    pub trigger: f64,
    /// Defaults to the trigger (no hysteresis).
    pub clear: Option<f64>,
}

/// Tells "absent" (None) from "null" (Some(None)) for PATCH.
fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The fields a rule ends up with, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleFields {
    pub name: String,
    pub metric: String,
    pub scope: Scope,
    pub warning: Option<Level>,
    pub critical: Option<Level>,
    pub for_s: Option<i64>,
    pub enabled: bool,
}

/// Longest `for_s`: a day. Longer holds are what maintenance windows are for.
pub const MAX_FOR_S: i64 = 86_400;

fn level(field: &str, def: &MetricDef, l: LevelInput) -> Result<Level, ApiError> {
    let clear = l.clear.unwrap_or(l.trigger);
    if l.trigger == DISABLED {
        return Ok(Level::new(DISABLED, DISABLED));
    }
    for (name, v) in [("trigger", l.trigger), ("clear", clear)] {
        if !v.is_finite() {
            return Err(ApiError::field(
                &format!("{field}.{name}"),
                "must be a finite number",
            ));
        }
        if v < 0.0 {
            return Err(ApiError::field(
                &format!("{field}.{name}"),
                "must be ≥ 0 (a trigger of -1 disables the level)",
            ));
        }
        if def.percent && v > 100.0 {
            return Err(ApiError::field(
                &format!("{field}.{name}"),
                "is a percentage: 0 to 100",
            ));
        }
    }
    if clear > l.trigger {
        return Err(ApiError::field(
            &format!("{field}.clear"),
            format!(
                "{clear} is above the trigger {}; {} rises, so it must clear at or below where it fires",
                l.trigger, def.name
            ),
        ));
    }
    Ok(Level::new(l.trigger, clear))
}

impl RuleInput {
    /// Applies this input over `base` (a stored rule for PATCH, or empty for
    /// create) and validates the result. `node_exists` checks a node scope.
    pub fn apply(
        self,
        base: Option<&RuleFields>,
        node_exists: impl Fn(&str) -> bool,
    ) -> Result<RuleFields, ApiError> {
        let metric_name = match (&self.metric, base) {
            (Some(m), _) => m.clone(),
            (None, Some(b)) => b.metric.clone(),
            (None, None) => return Err(ApiError::field("metric", "is required")),
        };
        let def = metric(&metric_name).ok_or_else(|| {
            let names: Vec<&str> = METRICS.iter().map(|d| d.name).collect();
            ApiError::field(
                "metric",
                format!("unknown metric '{metric_name}'; one of {}", names.join(", ")),
            )
        })?;
        let name = match (&self.name, base) {
            (Some(n), _) => crate::api::check_name("name", n, 100)?,
            (None, Some(b)) => b.name.clone(),
            (None, None) => format!("{metric_name} rule"),
        };
        let scope = match (self.scope, base) {
            (Some(s), _) => s,
            (None, Some(b)) => b.scope.clone(),
            (None, None) => Scope::default(),
        };
        if scope.node.is_some() && scope.labels.is_some() {
            return Err(ApiError::field(
                "scope",
                "takes either 'node' or 'labels', not both",
            ));
        }
        if let Some(n) = &scope.node {
            if !node_exists(n) {
                return Err(ApiError::field("scope.node", format!("no node '{n}'")));
            }
        }
        if let Some(l) = &scope.labels {
            if l.is_empty() {
                return Err(ApiError::field(
                    "scope.labels",
                    "must name at least one label (use {} for global)",
                ));
            }
            for (k, v) in l {
                crate::api::check_name("scope.labels", k, 64)?;
                if v.len() > 200 {
                    return Err(ApiError::field(
                        &format!("scope.labels.{k}"),
                        "must be at most 200 bytes",
                    ));
                }
            }
        }
        let pick = |input: Option<Option<LevelInput>>, old: Option<Level>, field: &str| match input {
            Some(Some(l)) => level(field, def, l).map(Some),
            Some(None) => Ok(None),
            None => Ok(old),
        };
        let warning = pick(self.warning, base.and_then(|b| b.warning), "warning")?;
        let critical = pick(self.critical, base.and_then(|b| b.critical), "critical")?;
        if let (Some(w), Some(c)) = (warning, critical) {
            if w.enabled() && c.enabled() && c.trigger < w.trigger {
                return Err(ApiError::field(
                    "critical.trigger",
                    format!("{} is below warning.trigger {}", c.trigger, w.trigger),
                ));
            }
        }
        let for_s = match self.for_s {
            Some(Some(s)) if !(0..=MAX_FOR_S).contains(&s) => {
                return Err(ApiError::field(
                    "for_s",
                    format!("must be 0 to {MAX_FOR_S} seconds"),
                ))
            }
            Some(v) => v,
            None => base.and_then(|b| b.for_s),
        };
        if warning.is_none() && critical.is_none() && for_s.is_none() {
            return Err(ApiError::field(
                "warning",
                "a rule needs 'warning', 'critical' or 'for_s' (a trigger of -1 disables a level)",
            ));
        }
        Ok(RuleFields {
            name,
            metric: metric_name,
            scope,
            warning,
            critical,
            for_s,
            enabled: self.enabled.or(base.map(|b| b.enabled)).unwrap_or(true),
        })
    }
}

/// Where an effective value came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Source {
    /// "default" | "global" | "labels" | "node"
    pub scope: &'static str,
    pub rule_id: Option<i64>,
}

impl Source {
    const DEFAULT: Source = Source {
        scope: "default",
        rule_id: None,
    };
}

/// One metric's thresholds for one node after the merge.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Effective {
    pub metric: &'static str,
    pub warning: Option<Level>,
    pub warning_from: Source,
    pub critical: Option<Level>,
    pub critical_from: Source,
    pub for_s: i64,
    pub for_s_from: Source,
}

impl Effective {
    /// The enabled levels, warning first.
    pub fn levels(&self) -> impl Iterator<Item = (Severity, Level, &Source)> {
        [
            (Severity::Warning, self.warning, &self.warning_from),
            (Severity::Critical, self.critical, &self.critical_from),
        ]
        .into_iter()
        .filter_map(|(s, l, src)| l.filter(|l| l.enabled()).map(|l| (s, l, src)))
    }
    pub fn level(&self, s: Severity) -> Option<Level> {
        match s {
            Severity::Warning => self.warning,
            Severity::Critical => self.critical,
        }
        .filter(|l| l.enabled())
    }
    pub fn source(&self, s: Severity) -> &Source {
        match s {
            Severity::Warning => &self.warning_from,
            Severity::Critical => &self.critical_from,
        }
    }
    pub fn any_enabled(&self) -> bool {
        self.levels().next().is_some()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// Merges the enabled rules that apply to a node into every metric's thresholds.
pub fn effective(rules: &[Rule], node_id: &str, labels: &BTreeMap<String, String>) -> Vec<Effective> {
    let mut applicable: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.enabled && r.scope.matches(node_id, labels))
        .collect();
    // Most specific first; among equals the newest rule wins.
    applicable.sort_by(|a, b| b.scope.rank().cmp(&a.scope.rank()).then(b.id.cmp(&a.id)));
    METRICS
        .iter()
        .map(|def| {
            let mine = || applicable.iter().filter(|r| r.metric == def.name);
            let src = |r: &Rule| Source {
                scope: r.scope.kind(),
                rule_id: Some(r.id),
            };
            let (warning, warning_from) = mine()
                .find_map(|r| r.warning.map(|l| (Some(l), src(r))))
                .unwrap_or((def.warning, Source::DEFAULT));
            let (critical, critical_from) = mine()
                .find_map(|r| r.critical.map(|l| (Some(l), src(r))))
                .unwrap_or((def.critical, Source::DEFAULT));
            let (for_s, for_s_from) = mine()
                .find_map(|r| r.for_s.map(|f| (f, src(r))))
                .unwrap_or((def.for_s, Source::DEFAULT));
            Effective {
                metric: def.name,
                warning,
                warning_from,
                critical,
                critical_from,
                for_s,
                for_s_from,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: i64, metric: &str, scope: Scope, warning: Option<Level>, critical: Option<Level>) -> Rule {
        Rule {
            id,
            name: format!("r{id}"),
            metric: metric.into(),
            scope,
            warning,
            critical,
            for_s: None,
            enabled: true,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn node_beats_labels_beats_global_beats_default_field_by_field() {
        let rules = vec![
            rule(1, "cpu", Scope::default(), Some(Level::new(70.0, 65.0)), None),
            rule(
                2,
                "cpu",
                Scope {
                    labels: Some(labels(&[("room", "attic")])),
                    node: None,
                },
                Some(Level::new(60.0, 55.0)),
                Some(Level::new(90.0, 85.0)),
            ),
            rule(
                3,
                "cpu",
                Scope {
                    node: Some("n1".into()),
                    labels: None,
                },
                None,
                Some(Level::new(99.0, 98.0)),
            ),
        ];
        let eff = effective(&rules, "n1", &labels(&[("room", "attic")]));
        let cpu = eff.iter().find(|e| e.metric == "cpu").unwrap();
        assert_eq!(cpu.warning, Some(Level::new(60.0, 55.0)));
        assert_eq!(cpu.warning_from.scope, "labels");
        assert_eq!(cpu.critical, Some(Level::new(99.0, 98.0)));
        assert_eq!(cpu.critical_from.rule_id, Some(3));
        assert_eq!(cpu.for_s_from.scope, "default");
        // Another node without the label gets the global warning and the default critical.
        let eff = effective(&rules, "n2", &BTreeMap::new());
        let cpu = eff.iter().find(|e| e.metric == "cpu").unwrap();
        assert_eq!(cpu.warning_from.rule_id, Some(1));
        assert_eq!(cpu.critical, Some(Level::new(95.0, 90.0)));
        assert_eq!(cpu.critical_from.scope, "default");
    }

    #[test]
    fn disabled_level_and_disabled_rule() {
        let mut off = rule(
            1,
            "disk",
            Scope::default(),
            Some(Level::new(DISABLED, DISABLED)),
            None,
        );
        let eff = effective(std::slice::from_ref(&off), "n", &BTreeMap::new());
        let disk = eff.iter().find(|e| e.metric == "disk").unwrap();
        assert_eq!(disk.level(Severity::Warning), None);
        assert!(disk.level(Severity::Critical).is_some());
        off.enabled = false;
        let eff = effective(&[off], "n", &BTreeMap::new());
        let disk = eff.iter().find(|e| e.metric == "disk").unwrap();
        assert!(disk.level(Severity::Warning).is_some());
    }

    #[test]
    fn validation_names_the_field() {
        let exists = |_: &str| true;
        let bad = |json: &str| {
            let input: RuleInput = serde_json::from_str(json).unwrap();
            input.apply(None, exists).unwrap_err().message
        };
        assert!(bad(r#"{"metric":"cpux","warning":{"trigger":1}}"#).contains("'metric'"));
        assert!(bad(r#"{"metric":"cpu","warning":{"trigger":70,"clear":80}}"#).contains("'warning.clear'"));
        assert!(bad(r#"{"metric":"cpu","warning":{"trigger":170}}"#).contains("'warning.trigger'"));
        assert!(
            bad(r#"{"metric":"cpu","warning":{"trigger":90},"critical":{"trigger":80}}"#)
                .contains("'critical.trigger'")
        );
        assert!(bad(r#"{"metric":"cpu"}"#).contains("'warning'"));
        assert!(bad(r#"{"metric":"cpu","for_s":-5}"#).contains("'for_s'"));
        let ok: RuleInput = serde_json::from_str(r#"{"metric":"load","warning":{"trigger":4}}"#).unwrap();
        let f = ok.apply(None, exists).unwrap();
        assert_eq!(f.warning, Some(Level::new(4.0, 4.0)));
    }

    #[test]
    fn patch_keeps_absent_fields_and_null_removes_a_level() {
        let exists = |_: &str| true;
        let base: RuleInput = serde_json::from_str(
            r#"{"metric":"cpu","warning":{"trigger":70,"clear":60},"critical":{"trigger":90}}"#,
        )
        .unwrap();
        let base = base.apply(None, exists).unwrap();
        let patch: RuleInput = serde_json::from_str(r#"{"critical":null,"for_s":30}"#).unwrap();
        let f = patch.apply(Some(&base), exists).unwrap();
        assert_eq!(f.warning, base.warning);
        assert_eq!(f.critical, None);
        assert_eq!(f.for_s, Some(30));
    }
}
