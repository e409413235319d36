//! The JSON of chart replies (node history, fleet chart), written straight
//! into the body. A 24-hour chart of two metrics is 720 times and 4,320
//! values: through serde, formatting the floats alone was a quarter of the
//! daemon's time per reply, and the times another tenth (BENCHMARKS §3).
//! Values are written to 4 decimal places from their integer form; names
//! and ids still go through serde_json for escaping.

use crate::clock;

/// Chart values to 4 decimal places: finer than any chart draws, and a
/// bucket's average printed in full (`60.45833333333333`) made up most of a
/// reply's bytes.
const SCALE: f64 = 1e4;
/// Above this a value's scaled integer form is no longer exact.
const EXACT_LIMIT: f64 = 9.0e15;

/// A JSON body being written.
pub struct Json(pub Vec<u8>);

impl Json {
    pub fn new() -> Json {
        Json(Vec::with_capacity(64 * 1024))
    }

    pub fn raw(&mut self, s: &str) -> &mut Json {
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    /// A JSON string, escaped.
    pub fn str(&mut self, s: &str) -> &mut Json {
        // Writing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.0, s);
        self
    }

    pub fn int(&mut self, n: i64) -> &mut Json {
        if n < 0 {
            self.0.push(b'-');
        }
        push_uint(&mut self.0, n.unsigned_abs());
        self
    }

    /// `"key":` (keys are our own constants or metric names).
    pub fn key(&mut self, k: &str) -> &mut Json {
        self.str(k).raw(":")
    }

    pub fn time(&mut self, ts: i64) -> &mut Json {
        self.0.push(b'"');
        clock::write_rfc3339(&mut self.0, ts);
        self.0.push(b'"');
        self
    }

    /// `[t1,t2,...]` as RFC 3339 strings.
    pub fn times(&mut self, ts: impl Iterator<Item = i64>) -> &mut Json {
        self.0.push(b'[');
        for (i, t) in ts.enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            self.time(t);
        }
        self.0.push(b']');
        self
    }

    /// `[v1,null,...]` with values to 4 decimal places.
    pub fn values(&mut self, vs: impl Iterator<Item = Option<f64>>) -> &mut Json {
        self.0.push(b'[');
        for (i, v) in vs.enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            match v {
                Some(v) => self.value(v),
                None => self.raw("null"),
            };
        }
        self.0.push(b']');
        self
    }

    /// One value to 4 decimal places, trailing zeros dropped (`12.5`, `3.0`).
    pub fn value(&mut self, v: f64) -> &mut Json {
        let scaled = (v * SCALE).round();
        if !scaled.is_finite() || scaled.abs() >= EXACT_LIMIT {
            // Never NaN or infinite here (ingest refuses them); far beyond
            // any metric's range, serde's shortest form is as good.
            let _ = serde_json::to_writer(&mut self.0, &if v.is_finite() { Some(v) } else { None });
            return self;
        }
        let n = scaled as i64;
        if n < 0 {
            self.0.push(b'-');
        }
        let n = n.unsigned_abs();
        push_uint(&mut self.0, n / 10_000);
        // The four decimals, trailing zeros dropped but one kept.
        let frac = (n % 10_000) as u16;
        let digits = [frac / 1000, frac / 100 % 10, frac / 10 % 10, frac % 10].map(|d| b'0' + d as u8);
        let keep = 4 - digits[1..].iter().rev().take_while(|d| **d == b'0').count();
        self.0.push(b'.');
        for d in &digits[..keep] {
            self.0.push(*d);
        }
        self
    }
}

/// Appends `n` in decimal, byte by byte: values are a few digits, and a
/// copy from a buffer was a `memmove` call each (a tenth of a chart's time).
fn push_uint(out: &mut Vec<u8>, mut n: u64) {
    let start = out.len();
    loop {
        out.push(b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out[start..].reverse();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: f64) -> String {
        let mut j = Json::new();
        j.value(v);
        String::from_utf8(j.0).unwrap()
    }

    #[test]
    fn values_are_written_to_four_places_and_parse_back() {
        for (v, text) in [
            (0.0, "0.0"),
            (-0.0, "0.0"),
            (3.0, "3.0"),
            (12.5, "12.5"),
            (60.458333333, "60.4583"),
            (0.00004, "0.0"),
            (0.00005, "0.0001"),
            (-2.25, "-2.25"),
            (99.99996, "100.0"),
            (123456789.12345, "123456789.1235"),
        ] {
            assert_eq!(one(v), text, "{v}");
        }
        // Beyond exact scaling: written as serde_json writes any float.
        assert_eq!(serde_json::from_str::<f64>(&one(1e300)).unwrap(), 1e300);
        // Parses to the nearest double of the 4-place decimal.
        for i in 0..20_000 {
            let v = i as f64 * 0.731_9 + 1.0 / 3.0;
            let back: f64 = serde_json::from_str(&one(v)).unwrap();
            assert_eq!(back, (v * 1e4).round() / 1e4, "{v}");
        }
    }

    #[test]
    fn arrays_times_and_strings_make_valid_json() {
        let mut j = Json::new();
        j.raw("{").key("id\"x").str("a\\b").raw(",").key("t");
        j.times([0, 86400].into_iter()).raw(",").key("v");
        j.values([Some(1.5), None].into_iter()).raw("}");
        let v: serde_json::Value = serde_json::from_slice(&j.0).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id\"x": "a\\b", "t": ["1970-01-01T00:00:00Z", "1970-01-02T00:00:00Z"], "v": [1.5, null]})
        );
    }
}
