//! Time: Unix seconds inside, RFC 3339 UTC on the wire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The last second humantime can format (9999-12-31T23:59:59Z).
pub const MAX_RFC3339_TS: i64 = 253_402_300_799;

/// Clamped to 1970..=9999: humantime's Display fails past year 9999, and
/// `to_string` turns that into a panic (a labwatch `"timestamp": 9999999999999` did).
pub fn rfc3339(ts: i64) -> String {
    rfc3339_display(ts).to_string()
}

/// `rfc3339` without the allocation, for writers (a 24-hour chart formats
/// 720 of them per reply).
pub fn rfc3339_display(ts: i64) -> impl std::fmt::Display {
    let t = UNIX_EPOCH + Duration::from_secs(ts.clamp(0, MAX_RFC3339_TS) as u64);
    humantime::format_rfc3339_seconds(t)
}

/// RFC 3339 (any offset-free `Z` form humantime accepts) to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(s.trim())
        .map_err(|e| format!("'{s}' is not an RFC 3339 UTC time ({e})"))?;
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| format!("'{s}' is before 1970"))
}

/// A query-parameter time: RFC 3339 or Unix seconds.
pub fn parse_time_param(s: &str) -> Result<i64, String> {
    if let Ok(n) = s.parse::<i64>() {
        if (0..=253_402_300_799).contains(&n) {
            return Ok(n);
        }
        return Err(format!("'{s}' is out of range for Unix seconds"));
    }
    parse_rfc3339(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MIN), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2026-11-23T14:50:00Z").unwrap(), 1795445400);
        assert_eq!(parse_time_param("1795445400").unwrap(), 1795445400);
        assert!(parse_time_param("yesterday").is_err());
        assert!(parse_time_param("-5").is_err());
    }
}

/// ISO 8601 as agents send it: `Z`, `±HH:MM` or no offset (taken as UTC),
/// with or without fractional seconds.
pub fn parse_iso8601(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let bad = || format!("'{s}' is not an ISO 8601 time");
    if s.len() < 19 || !s.is_char_boundary(19) {
        return Err(bad());
    }
    let (base, rest) = s.split_at(19);
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset_s: i64 = match rest {
        "" | "Z" | "z" => 0,
        o if (o.starts_with('+') || o.starts_with('-')) && o.len() == 6 && o.as_bytes()[3] == b':' => {
            let h: i64 = o[1..3].parse().map_err(|_| bad())?;
            let m: i64 = o[4..6].parse().map_err(|_| bad())?;
            let v = h * 3600 + m * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad()),
    };
    let utc = parse_rfc3339(&format!("{base}Z")).map_err(|_| bad())?;
    Ok(utc - offset_s)
}

#[cfg(test)]
mod iso_tests {
    use super::*;

    #[test]
    fn accepts_agent_variants() {
        let t = 1795445400;
        assert_eq!(parse_iso8601("2026-11-23T14:50:00Z").unwrap(), t);
        assert_eq!(parse_iso8601("2026-11-23T14:50:00").unwrap(), t);
        assert_eq!(parse_iso8601("2026-11-23T14:50:00.123456+00:00").unwrap(), t);
        assert_eq!(parse_iso8601("2026-11-23T15:50:00+01:00").unwrap(), t);
        assert!(parse_iso8601("2026-11-23").is_err());
        assert!(parse_iso8601("2026-11-23T14:50:00+1").is_err());
        assert!(parse_iso8601("2026-11-23T14:50:0é").is_err());
    }
}
