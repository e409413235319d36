//! Trend and forecast: a least-squares line through a metric's recent
//! history answers "when does this reach N?" (disk full in N days).

use crate::app::{Call, Ctx};
use crate::clock;
use crate::http::{ApiError, ApiResult, Reply};
use crate::store::history::{metric_index, METRICS};
use serde_json::json;

/// Slope (units per second) and intercept of the best line through points.
pub fn fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

pub fn forecast(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let node = super::nodes::find(ctx, call.params.get("id"))?;
    let name = call.req.query("metric").unwrap_or("disk");
    let metric = metric_index(name).ok_or_else(|| {
        ApiError::field(
            "metric",
            format!("unknown metric '{name}'; known: {}", METRICS.join(", ")),
        )
    })?;
    let days: f64 = match call.req.query("days") {
        None => 7.0,
        Some(v) => v
            .parse()
            .ok()
            .filter(|d: &f64| d.is_finite() && *d >= 0.1 && *d <= 365.0)
            .ok_or_else(|| ApiError::field("days", "must be a number from 0.1 to 365"))?,
    };
    let threshold: f64 = match call.req.query("threshold") {
        None => 100.0,
        Some(v) => v
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite())
            .ok_or_else(|| ApiError::field("threshold", "must be a number"))?,
    };
    let now = clock::now();
    ctx.store.settle_rollups(now)?;
    let from = now - (days * 86400.0) as i64;
    let series = ctx.store.history(&node.id, &[metric], from, now, 500, now)?;
    let points: Vec<(f64, f64)> = series
        .timestamps
        .iter()
        .zip(&series.points[0])
        .filter_map(|(t, p)| p.map(|p| (*t as f64, p.avg)))
        .collect();
    let current = points.last().map(|p| p.1);
    let span_s = match (points.first(), points.last()) {
        (Some(a), Some(b)) => b.0 - a.0,
        _ => 0.0,
    };
    let mut out = json!({
        "node_id": node.id,
        "metric": METRICS[metric],
        "window_days": days,
        "threshold": threshold,
        "points": points.len(),
        "current": current,
        "slope_per_day": null,
        "reaches_threshold_at": null,
        "days_until_threshold": null,
        "trend": "unknown",
    });
    // Fewer than six points or under an hour of data says nothing reliable.
    if points.len() < 6 || span_s < 3600.0 {
        out["message"] = json!("not enough history for a trend yet");
        return Ok(Reply::ok(&out));
    }
    let Some((slope, intercept)) = fit(&points) else {
        return Ok(Reply::ok(&out));
    };
    let per_day = slope * 86400.0;
    out["slope_per_day"] = json!(per_day);
    let level_now = slope * now as f64 + intercept;
    if level_now >= threshold {
        out["trend"] = json!("at_threshold");
        out["days_until_threshold"] = json!(0.0);
        out["reaches_threshold_at"] = json!(clock::rfc3339(now));
    } else if per_day > 1e-9 {
        let secs = (threshold - level_now) / slope;
        out["trend"] = json!("rising");
        out["days_until_threshold"] = json!(secs / 86400.0);
        if secs < 100.0 * 365.0 * 86400.0 {
            out["reaches_threshold_at"] = json!(clock::rfc3339(now + secs as i64));
        }
    } else {
        out["trend"] = json!(if per_day < -1e-9 { "falling" } else { "flat" });
    }
    Ok(Reply::ok(&out))
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn fits_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 2.0 * i as f64 + 1.0)).collect();
        let (m, b) = fit(&pts).unwrap();
        assert!((m - 2.0).abs() < 1e-12 && (b - 1.0).abs() < 1e-12);
        assert!(fit(&[(1.0, 1.0)]).is_none());
        assert!(fit(&[(1.0, 1.0), (1.0, 2.0)]).is_none());
    }
}
