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
    let t = UNIX_EPOCH + Duration::from_secs(ts.clamp(0, MAX_RFC3339_TS) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Appends `rfc3339(ts)` to `out` without going through `fmt`: a 24-hour
/// chart writes 720 of them per reply, and formatting them was a tenth of
/// the reply's time (BENCHMARKS §3).
pub fn write_rfc3339(out: &mut Vec<u8>, ts: i64) {
    let ts = ts.clamp(0, MAX_RFC3339_TS);
    let (days, secs) = (ts / 86400, ts % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let two = |n: i64| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    let [y1, y2] = two(year / 100);
    let [y3, y4] = two(year % 100);
    let [mo1, mo2] = two(month);
    let [d1, d2] = two(day);
    let [h1, h2] = two(secs / 3600);
    let [mi1, mi2] = two(secs / 60 % 60);
    let [s1, s2] = two(secs % 60);
    out.extend_from_slice(&[
        y1, y2, y3, y4, b'-', mo1, mo2, b'-', d1, d2, b'T', h1, h2, b':', mi1, mi2, b':', s1, s2,
    ]);
    out.push(b'Z');
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

    #[test]
    fn the_fast_writer_matches_humantime() {
        let mut probes: Vec<i64> = vec![i64::MIN, -1, 0, 59, 86399, 86400, 951_782_400, 4_107_542_399];
        probes.extend([MAX_RFC3339_TS, MAX_RFC3339_TS + 1, i64::MAX]);
        // Every day boundary and leap day for 600 years, and odd seconds.
        probes.extend((0..600 * 366).map(|d| d * 86400 + (d * 7919) % 86400));
        for ts in probes {
            let mut out = Vec::new();
            write_rfc3339(&mut out, ts);
            assert_eq!(String::from_utf8(out).unwrap(), rfc3339(ts), "ts {ts}");
        }
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
    // The 19 bytes without a zone read as UTC; no copy with a `Z` appended
    // (this runs for every ingested snapshot).
    let utc = humantime::parse_rfc3339_weak(base)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .ok_or_else(bad)?;
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
        assert!(parse_iso8601("2026-11-23 14:50:00Z").is_ok_and(|v| v == t));
        assert!(parse_iso8601("2026-13-23T14:50:00Z").is_err());
        assert!(parse_iso8601("1969-12-31T23:59:59Z").is_err());
    }
}
