//! cairn-agent ingest bodies: one snapshot, or `{"snapshots": [...]}`.
//!
//! Two parsers with one outcome. The checked one builds a JSON tree first,
//! so that any fault is named by its field; it costs a tree ~10x the body
//! and a re-serialised copy of every snapshot. The direct one, tried first,
//! deserialises each snapshot straight from its slice of the body and keeps
//! the detail JSON of the newest only. It gives up on anything unusual
//! (any error, deep nesting, a `null`, empty or oversized batch)
//! and the checked parser then decides, so a body is accepted or refused,
//! and with which message, exactly as the checked parser alone would.

use super::ingest::{batch_item, detail_rows, parse_json, to_item, Detail, Item};
use crate::http::ApiError;
use cairn_wire::Snapshot;
use serde_json::value::RawValue;
use serde_json::Value;

pub fn parse_native(body: &[u8], now: i64) -> Result<Vec<Item>, ApiError> {
    match parse_direct(body, now) {
        Some(items) => Ok(items),
        None => parse_checked(body, now),
    }
}

#[derive(serde::Deserialize)]
struct Top<'a> {
    /// Absent: one snapshot; `null`: a batch gone wrong; else the batch.
    #[serde(borrow, default, deserialize_with = "present")]
    snapshots: Option<Option<Vec<&'a RawValue>>>,
}

fn present<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Vec<&'a RawValue>>>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

/// Deeper than this, the direct parser leaves the body to the checked one
/// (whose JSON tree refuses nesting past 128 levels).
const DIRECT_MAX_DEPTH: usize = 64;

fn parse_direct(body: &[u8], now: i64) -> Option<Vec<Item>> {
    let text = std::str::from_utf8(body).ok()?;
    // A batch as agents write it: each snapshot is read once, in place.
    if let Some((raws, items)) = agent_batch(text, now) {
        return with_newest_detail(&raws, items);
    }
    let compact = shape(body, DIRECT_MAX_DEPTH)?;
    // serde reads a struct from an array too; the checked parser does not.
    if !text.trim_start().starts_with('{') {
        return None;
    }
    // A body that never mentions "snapshots" is one snapshot: one pass
    // reads it and checks its syntax, and, written without blanks as
    // agents write it, its text is the detail JSON as it is.
    // (A `\u` escape could spell "snapshots" in a key.)
    if !contains(body, b"snapshots") && !contains(body, b"\\u") {
        return single(text, compact, now);
    }
    // One pass over the body finds the batch, if any, and checks its syntax.
    let top: Top = serde_json::from_str(text).ok()?;
    let Some(raws) = top.snapshots else {
        return single(text, compact, now);
    };
    let raws: Vec<&str> = raws?.into_iter().map(RawValue::get).collect();
    if raws.len() > cairn_wire::MAX_BATCH {
        return None;
    }
    let mut items = Vec::with_capacity(raws.len());
    for raw in &raws {
        if !raw.starts_with('{') {
            return None;
        }
        items.push(item(&serde_json::from_str(raw).ok()?, now, &items)?);
    }
    with_newest_detail(&raws, items)
}

/// A snapshot of a batch as an item, `items` being those before it. Each
/// snapshot becomes its item as soon as it is read, so only one whole
/// snapshot is alive at a time.
fn item(snap: &Snapshot, now: i64, items: &[Item]) -> Option<Item> {
    batch_item(snap, Detail::Skip, "", now, items.last().map(|i| i.ts)).ok()
}

thread_local! {
    /// The snapshot each batch item of this thread is read into, in place:
    /// its strings and lists keep their blocks from one snapshot to the
    /// next. Allocating and freeing them anew (~30 blocks a snapshot) was
    /// about a sixth of a parse thread's time under a backfill.
    static SCRATCH: std::cell::RefCell<Snapshot> = std::cell::RefCell::default();
}

/// Reads a snapshot into `SCRATCH`, for `StreamDeserializer`, which tells
/// where it stopped reading but deserialises only whole values.
///
/// serde's derived `deserialize_in_place` sets every field the text lacks
/// to its default (the wire types are `#[serde(default)]`), so nothing of
/// the previous snapshot survives into the next; after an error the scratch
/// is in an unknown state, and the batch goes to the checked parser anyway.
struct Scratch;

impl<'de> serde::Deserialize<'de> for Scratch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Scratch, D::Error> {
        SCRATCH.with_borrow_mut(|snap| <Snapshot as serde::Deserialize>::deserialize_in_place(d, snap))?;
        Ok(Scratch)
    }
}

/// Empties `SCRATCH` when dropped: its blocks are reused within one batch
/// only, so that one odd snapshot (a list of thousands, say) does not keep
/// its memory on the parse thread after its request.
struct ClearScratch;

impl Drop for ClearScratch {
    fn drop(&mut self) {
        drop(SCRATCH.take());
    }
}

/// A batch's items, the newest keeping its detail JSON (its own text, as it
/// is when written without blanks); `raws[i]` is item i's text.
fn with_newest_detail(raws: &[&str], mut items: Vec<Item>) -> Option<Vec<Item>> {
    // Both callers hold a batch to `MAX_BATCH`; `first_newest` refuses an empty one.
    let newest = first_newest(&items)?;
    let raw = raws[newest];
    items[newest].latest = Some(if shape(raw.as_bytes(), DIRECT_MAX_DEPTH)? {
        raw.to_string()
    } else {
        serde_json::from_str::<Value>(raw).ok()?.to_string()
    });
    if !has_rows(&items[newest]) {
        // Alerts read the newest snapshot's mounts: read it again for them.
        (items[newest].disks, items[newest].nets) = detail_rows(&serde_json::from_str(raw).ok()?);
    }
    Some(items)
}

/// What an agent sends when it backfills: `{"snapshots":[`, snapshot
/// objects separated by single commas, `]}`. Each snapshot is deserialised
/// straight from the body, and where serde stops reading it, the next byte
/// must be the comma (or the end of the list). `None` for any other shape,
/// any error, or more than a batch may hold: the general path decides then.
/// Returns each snapshot's text and the items.
///
/// Every byte is checked: the fixed start and end, each comma, and each
/// snapshot, which serde reads as one whole JSON value. So a body this
/// accepts is valid JSON with one key, and no separate pass over it is
/// needed. serde bounds the nesting of the fields it knows, not of those it
/// skips (unknown collectors); a snapshot with more than `DIRECT_MAX_DEPTH`
/// brackets in all is measured exactly, so a body the checked parser would
/// refuse for its depth is left to it.
fn agent_batch(text: &str, now: i64) -> Option<(Vec<&str>, Vec<Item>)> {
    let inner = text.strip_prefix(r#"{"snapshots":["#)?.strip_suffix("]}")?;
    let _clear = ClearScratch;
    // No snapshot is shorter than 37 bytes (its timestamp and a comma), so
    // this many can never be too few; but 500 items are ~170 KB, a block
    // that gets its own mapping, paid for in page faults and an unmap on the
    // executor for every batch. So the vectors are sized once the first
    // snapshot shows how long they are, a quarter over (growing only if
    // later ones are shorter).
    let most = cairn_wire::MAX_BATCH.min(inner.len() / 37 + 1);
    let (mut raws, mut items) = (Vec::new(), Vec::new());
    let mut from = 0;
    loop {
        if raws.len() == cairn_wire::MAX_BATCH || !inner[from..].starts_with('{') {
            return None;
        }
        let mut values = serde_json::Deserializer::from_str(&inner[from..]).into_iter::<Scratch>();
        values.next()?.ok()?;
        let to = from + values.byte_offset();
        let raw = &inner[from..to];
        // The array and the top object are two levels already.
        let limit = DIRECT_MAX_DEPTH - 2;
        if memchr::memchr2_iter(b'{', b'[', raw.as_bytes()).count() > limit {
            shape(raw.as_bytes(), limit)?;
        }
        if raws.is_empty() {
            let guess = most.min(inner.len() / raw.len().max(37) * 5 / 4 + 1);
            (raws, items) = (Vec::with_capacity(guess), Vec::with_capacity(guess));
        }
        items.push(SCRATCH.with_borrow(|snap| item(snap, now, &items))?);
        raws.push(raw);
        match inner.as_bytes().get(to) {
            None => return Some((raws, items)),
            Some(b',') => from = to + 1,
            Some(_) => return None,
        }
    }
}

/// Where the string whose content starts at `i` ends (its closing quote),
/// over escapes; `None` if it never does.
fn string_end(body: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i += memchr::memchr2(b'"', b'\\', body.get(i..)?)?;
        if body[i] == b'"' {
            return Some(i);
        }
        i += 2;
    }
}

/// One snapshot, the whole body; a compact body's text is its detail JSON.
fn single(text: &str, compact: bool, now: i64) -> Option<Vec<Item>> {
    let snap: Snapshot = serde_json::from_str(text).ok()?;
    let detail = if compact {
        Detail::Text(text.to_string())
    } else {
        Detail::Json(serde_json::from_str(text).ok()?)
    };
    Some(vec![to_item(snap, detail, "", now).ok()?])
}

/// The item that keeps its detail JSON: the first of the newest, which is
/// the one ingest stores as the node's latest (both parsers pick it here).
fn first_newest(items: &[Item]) -> Option<usize> {
    (0..items.len()).rev().max_by_key(|&i| items[i].ts)
}

/// Whether a batch item kept its per-mount and per-interface figures (an
/// item without may just come from a snapshot that has none).
fn has_rows(item: &Item) -> bool {
    !item.disks.is_empty() || !item.nets.is_empty()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Byte classes for `shape`; most bytes of a body (digits, letters, `,:.`)
/// are `OTHER` and cost one table lookup.
const OTHER: u8 = 0;
const OPEN: u8 = 1;
const CLOSE: u8 = 2;
const QUOTE: u8 = 3;
const BLANK: u8 = 4;
static CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    t[b'{' as usize] = OPEN;
    t[b'[' as usize] = OPEN;
    t[b'}' as usize] = CLOSE;
    t[b']' as usize] = CLOSE;
    t[b'"' as usize] = QUOTE;
    t[b' ' as usize] = BLANK;
    t[b'\t' as usize] = BLANK;
    t[b'\n' as usize] = BLANK;
    t[b'\r' as usize] = BLANK;
    t
};

/// `None` if an object or array in `body` nests deeper than `limit`, else
/// whether the body is compact: no blank outside its strings. (An
/// unterminated string ends the scan; the parser refuses such a body.)
fn shape(body: &[u8], limit: usize) -> Option<bool> {
    let (mut depth, mut compact, mut i) = (0usize, true, 0);
    while let Some(&b) = body.get(i) {
        match CLASS[b as usize] {
            OTHER => {}
            OPEN => {
                depth += 1;
                if depth > limit {
                    return None;
                }
            }
            CLOSE => depth = depth.saturating_sub(1),
            BLANK => compact = false,
            // A string: on to its closing quote (an unterminated one
            // ends the scan).
            _ => match string_end(body, i + 1) {
                Some(end) => i = end,
                None => return Some(compact),
            },
        }
        i += 1;
    }
    Some(compact)
}

/// Through a JSON tree: slower, and names the field at fault. Public for
/// the benchmark that compares the two.
pub fn parse_checked(body: &[u8], now: i64) -> Result<Vec<Item>, ApiError> {
    let value = parse_json(body)?;
    let Value::Object(mut obj) = value else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let Some(list) = obj.remove("snapshots") else {
        let v = Value::Object(obj);
        let snap = checked_snapshot(&v, "")?;
        return Ok(vec![to_item(snap, Detail::Json(v), "", now)?]);
    };
    let Value::Array(list) = list else {
        return Err(ApiError::field("snapshots", "must be an array"));
    };
    if list.is_empty() {
        return Err(ApiError::field("snapshots", "is empty"));
    }
    if list.len() > cairn_wire::MAX_BATCH {
        return Err(ApiError::field(
            "snapshots",
            format!(
                "has {} entries; at most {} per request",
                list.len(),
                cairn_wire::MAX_BATCH
            ),
        ));
    }
    let mut items = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let prefix = format!("snapshots[{i}].");
        let snap = checked_snapshot(v, &prefix)?;
        let previous = items.last().map(|i: &Item| i.ts);
        items.push(batch_item(&snap, Detail::Skip, &prefix, now, previous)?);
    }
    if let Some(newest) = first_newest(&items) {
        items[newest].latest = Some(list[newest].to_string());
        if !has_rows(&items[newest]) {
            // Alerts read the newest snapshot's mounts: read it again for them.
            let snap = checked_snapshot(&list[newest], "")?;
            (items[newest].disks, items[newest].nets) = detail_rows(&snap);
        }
    }
    Ok(items)
}

fn checked_snapshot(v: &Value, prefix: &str) -> Result<Snapshot, ApiError> {
    if !v.is_object() {
        return Err(ApiError::field(
            prefix.trim_end_matches('.'),
            "must be a JSON object",
        ));
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        ApiError::field(&format!("{prefix}{path}"), e.into_inner())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_445_400; // 2026-11-23T14:50:00Z

    /// The same items, with the same detail JSON (as a value: the direct
    /// parser keeps a compact body's text as it is).
    fn same(a: &[Item], b: &[Item]) -> bool {
        let norm = |items: &[Item]| {
            items
                .iter()
                .map(|i| {
                    let detail = i
                        .latest
                        .as_deref()
                        .map(|t| serde_json::from_str::<Value>(t).unwrap());
                    format!(
                        "{:?} {detail:?}",
                        Item {
                            latest: None,
                            ..i.clone()
                        }
                    )
                })
                .collect::<Vec<_>>()
        };
        norm(a) == norm(b)
    }

    const BATCH: &str = r#"{"snapshots":[
        {"timestamp":"2026-11-23T14:48:00Z","cpu":{"total_percent":10},"docker":{"n":1}},
        {"timestamp":"2026-11-23T14:49:00Z","cpu":{"total_percent":20},"docker":{"n":2}},
        {"timestamp":"2026-11-23T14:49:00Z","cpu":{"total_percent":30},"docker":{"n":3}},
        {"timestamp":"2026-11-23T14:47:00Z","disks":[{"mount":"/","used_percent":5}]}]}"#;

    /// BATCH without its blanks, as agents send it.
    fn compact_batch_text() -> String {
        let text = serde_json::from_str::<Value>(BATCH).unwrap().to_string();
        assert!(agent_batch(&text, NOW).is_some_and(|(r, _)| r.len() == 4));
        text
    }

    #[test]
    fn only_an_agent_shaped_batch_is_read_in_place() {
        // Snapshots that differ only in what follows their timestamp.
        let batch = |entries: &[&str]| {
            let list: Vec<String> = entries
                .iter()
                .map(|e| match e.strip_prefix('{') {
                    Some(rest) => format!(r#"{{"timestamp":"2026-11-23T14:48:00Z",{rest}"#),
                    None => e.to_string(),
                })
                .collect();
            format!(r#"{{"snapshots":[{}]}}"#, list.join(","))
        };
        let ok = batch(&[r#"{"a":"],"}"#, r#"{"b":[1,[2]]}"#]);
        let (raws, items) = agent_batch(&ok, NOW).unwrap();
        assert_eq!(raws.len(), 2);
        assert!(raws[0].ends_with(r#","a":"],"}"#) && raws[1].ends_with(r#","b":[1,[2]]}"#));
        assert_eq!(items.len(), 2);
        let one = batch(&[r#"{"a":1}"#]);
        let inner = &one[r#"{"snapshots":["#.len()..one.len() - 2];
        for other in [
            format!(r#"{{"snapshots":[{inner} ]}}"#),
            format!(r#"{{"snapshots":[{inner},]}}"#),
            format!(r#"{{"snapshots":[{inner},,{inner}]}}"#),
            r#"{"snapshots":[]}"#.to_string(),
            format!(r#"{{"snapshots":[[{inner}]]}}"#),
            format!(r#"{{"snapshots":[{inner}]}},"x":[]}}"#),
            format!(r#"{{"snapshots":[{inner}]}}]}}"#),
            batch(&[r#"{"a":[1}"#]),
            batch(&[r#"{"a":"1}"#]),
            format!(r#"{{"x":1,"snapshots":[{inner}]}}"#),
            format!(r#" {{"snapshots":[{inner}]}}"#),
        ] {
            assert!(agent_batch(&other, NOW).is_none(), "{other}");
        }
        // Nesting: the body's 64 levels allow 62 inside a snapshot, also
        // when serde skips them (an unknown key).
        let nested = |k: usize| batch(&[&format!(r#"{{"x":{}{}}}"#, "[".repeat(k), "]".repeat(k))]);
        assert!(agent_batch(&nested(61), NOW).is_some());
        assert!(agent_batch(&nested(62), NOW).is_none());
        // Many brackets but shallow (a NAS with 70 mounts) is fine.
        let disks = vec![r#"{"mount":"/m"}"#; 70].join(",");
        assert!(agent_batch(&batch(&[&format!(r#"{{"disks":[{disks}]}}"#)]), NOW).is_some());
        let full = vec![r#"{"a":1}"#; cairn_wire::MAX_BATCH + 1];
        assert!(agent_batch(&batch(&full), NOW).is_none());
        let most = vec![r#"{"a":1}"#; cairn_wire::MAX_BATCH];
        assert!(agent_batch(&batch(&most), NOW).is_some());
    }

    #[test]
    fn nothing_of_a_snapshot_survives_into_the_next_one_read_in_place() {
        // Each snapshot of a batch is read into the last one's value: fields
        // the next lacks, and list entries past its own, must not show.
        let full = r#"{"timestamp":"2026-11-23T14:30:00Z","hostname":"h","system":{"os":"Debian","kernel":"6.6","arch":"aarch64","model":"Pi","agent_version":"0.1.0"},"cpu":{"total_percent":50,"per_core":[40,60],"count":2},"memory":{"total_bytes":1000,"used_bytes":500,"used_percent":50,"swap_total_bytes":100,"swap_percent":10},"load":{"load1":1,"load5":2,"load15":3},"uptime_seconds":9,"disks":[{"mount":"/","used_percent":5,"total_bytes":100},{"mount":"/data","used_percent":7}],"disk_io":[{"device":"sda","read_bytes_per_s":1}],"net":[{"interface":"eth0","rx_bytes_per_s":5,"tx_bytes_per_s":6}],"temperatures":[{"sensor":"cpu","celsius":50}],"pi":{"raw":1},"processes":[{"pid":1,"name":"init","cpu_percent":1,"memory_bytes":5}]}"#;
        let sparse = r#"{"timestamp":"2026-11-23T14:40:00Z"}"#;
        let fewer = r#"{"timestamp":"2026-11-23T14:45:00Z","cpu":{"per_core":[1]},"disks":[{"mount":"/x","used_percent":9}]}"#;
        let snaps = [full, sparse, fewer, full];
        let body = format!(r#"{{"snapshots":[{}]}}"#, snaps.join(","));
        let (_, items) = agent_batch(&body, NOW).unwrap();
        let no_detail = |i: &Item| Item {
            latest: None,
            ..i.clone()
        };
        for (item, text) in items.iter().zip(snaps) {
            // Alone, through the tree: what the snapshot itself says.
            let alone = parse_checked(format!(r#"{{"snapshots":[{text}]}}"#).as_bytes(), NOW).unwrap();
            assert!(same(&[no_detail(item)], &[no_detail(&alone[0])]), "{text}");
        }
        assert_eq!(items[1].system, Default::default());
        assert!(items[1].disks.is_empty() && items[1].nets.is_empty());
        assert_eq!(items[2].disks.len(), 1);
        // Nothing is kept for the next request.
        assert_eq!(
            SCRATCH.with_borrow(|s| s.disks.capacity() + s.timestamp.capacity()),
            0
        );
    }

    const SINGLE: &str = r#"{"timestamp":"2026-11-23T14:49:00Z","cpu":{"total_percent":12.5,"per_core":[10,15]},"docker":{"n":1,"c":[{"id":"a"}]},"zfs":null,"disks":[{"mount":"/","used_percent":5}]}"#;

    #[test]
    fn the_direct_parser_gives_what_the_checked_one_gives() {
        let single = br#"{"timestamp":"2026-11-23T14:49:00Z","cpu":{"total_percent":12.5},"zfs":null}"#;
        let escaped_key = br#"{"timestamp":"2026-11-23T14:49:00Z","\u0063pu":{"total_percent":3}}"#;
        let dup_unknown = br#"{"timestamp":"2026-11-23T14:49:00Z","docker":{"n":1},"docker":{"n":2}}"#;
        // Commas, quotes, brackets and escapes inside strings and nested
        // values of a compact batch are not its separators.
        let tricky = br#"{"snapshots":[{"timestamp":"2026-11-23T14:48:00Z","x":"a,\"]},{b\\"},{"timestamp":"2026-11-23T14:49:00Z","docker":[[1,2],{"c":[3,{}]}],"y":"\\\\"}]}"#;
        assert_eq!(
            std::str::from_utf8(tricky)
                .ok()
                .and_then(|t| agent_batch(t, NOW))
                .map(|(raws, _)| raws.len()),
            Some(2)
        );
        let compact = compact_batch_text();
        for body in [
            &single[..],
            BATCH.as_bytes(),
            compact.as_bytes(),
            &tricky[..],
            SINGLE.as_bytes(),
            &escaped_key[..],
            &dup_unknown[..],
        ] {
            let direct = parse_direct(body, NOW)
                .unwrap_or_else(|| panic!("not direct: {}", String::from_utf8_lossy(body)));
            let checked = parse_checked(body, NOW).unwrap();
            assert!(same(&direct, &checked), "{direct:?}\n!=\n{checked:?}");
        }
    }

    #[test]
    fn only_the_first_newest_snapshot_keeps_its_detail() {
        let items = parse_native(BATCH.as_bytes(), NOW).unwrap();
        let kept: Vec<usize> = (0..items.len()).filter(|&i| items[i].latest.is_some()).collect();
        assert_eq!(kept, [1]);
        let detail = items[1].latest.as_deref().unwrap();
        assert!(detail.contains(r#""docker":{"n":2}"#), "{detail}");
    }

    #[test]
    fn unusual_bodies_are_left_to_the_checked_parser() {
        let deep = format!(
            r#"{{"timestamp":"2026-11-23T14:49:00Z","x":{}1{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        // Too deep where serde skips (an unknown key of an older snapshot).
        let deep_skipped = format!(
            r#"{{"snapshots":[{{"timestamp":"2026-11-23T14:48:00Z","x":{}1{}}},{{"timestamp":"2026-11-23T14:49:00Z"}}]}}"#,
            "[".repeat(130),
            "]".repeat(130)
        );
        let cases = [
            deep_skipped,
            // A duplicate key: the tree keeps the last value.
            r#"{"timestamp":"2026-11-23T14:49:00Z","cpu":{"total_percent":1},"cpu":{"total_percent":2}}"#
                .to_string(),
            deep,
            r#"{"snapshots":null}"#.to_string(),
            r#"{"snapshots":[]}"#.to_string(),
            r#"{"snapshots":[1]}"#.to_string(),
            r#"[[{"timestamp":"2026-11-23T14:49:00Z"}]]"#.to_string(),
            r#"{"snapshots":null,"timestamp":"2026-11-23T14:49:00Z"}"#.to_string(),
            r#"{"\u0073napshots":null,"timestamp":"2026-11-23T14:49:00Z"}"#.to_string(),
            r#"{"timestamp":"2026-11-23T14:49:00Z","cpu":{"total_percent":150}}"#.to_string(),
        ];
        for body in &cases {
            assert!(parse_direct(body.as_bytes(), NOW).is_none(), "{body}");
            let (a, b) = (
                parse_native(body.as_bytes(), NOW),
                parse_checked(body.as_bytes(), NOW),
            );
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{body}");
        }
        assert!(parse_checked(cases[0].as_bytes(), NOW).is_err());
        let dup = parse_native(cases[1].as_bytes(), NOW).unwrap();
        assert_eq!(dup[0].sample.values[0], Some(2.0));
    }

    /// A small deterministic generator: `next(n)` is in 0..n.
    fn xorshift(mut seed: u64) -> impl FnMut(usize) -> usize {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        }
    }

    /// Mutated bodies: whenever the direct parser accepts one, the checked
    /// parser accepts it too, with the same items.
    #[test]
    fn the_direct_parser_never_accepts_what_the_checked_one_refuses() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let alphabet = b"{}[]\":,0123456789.-eE \\nulltrue\x00\xff";
        let compact = compact_batch_text();
        let (mut direct_ok, rounds) = (0, 30_000);
        for round in 0..rounds {
            // Batches (compact ones are read in place), and compact single
            // snapshots (whose text is kept as it is).
            let mut b = match round % 3 {
                0 => SINGLE.as_bytes().to_vec(),
                1 => BATCH.as_bytes().to_vec(),
                _ => compact.as_bytes().to_vec(),
            };
            for _ in 0..1 + next(3) {
                let at = next(b.len());
                match next(3) {
                    0 => b[at] = alphabet[next(alphabet.len())],
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, alphabet[next(alphabet.len())]),
                }
            }
            if let Some(direct) = parse_direct(&b, NOW) {
                direct_ok += 1;
                let checked = parse_checked(&b, NOW).unwrap_or_else(|e| {
                    panic!(
                        "direct accepted, checked refused ({e:?}): {}",
                        String::from_utf8_lossy(&b)
                    )
                });
                assert!(same(&direct, &checked), "{}", String::from_utf8_lossy(&b));
            }
        }
        // The mutations must leave some bodies valid, or this proves nothing.
        assert!(direct_ok > rounds / 20, "only {direct_ok} mutated bodies parsed");
    }

    /// `shape` as first written, byte by byte: the reference for the
    /// table-and-memchr one.
    fn shape_bytewise(body: &[u8], limit: usize) -> Option<bool> {
        let (mut depth, mut in_string, mut escaped, mut compact) = (0usize, false, false, true);
        for &b in body {
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > limit {
                        return None;
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                b' ' | b'\t' | b'\n' | b'\r' => compact = false,
                _ => {}
            }
        }
        Some(compact)
    }

    #[test]
    fn shape_agrees_with_a_byte_by_byte_scan() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"{}[]\"\\ \t\n\ra1,:";
        let mut seen = [0usize; 3];
        for _ in 0..100_000 {
            let body: Vec<u8> = (0..next(24)).map(|_| alphabet[next(alphabet.len())]).collect();
            let limit = next(5);
            let want = shape_bytewise(&body, limit);
            assert_eq!(
                shape(&body, limit),
                want,
                "{:?} limit {limit}",
                String::from_utf8_lossy(&body)
            );
            seen[match want {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            }] += 1;
        }
        assert!(seen.iter().all(|&n| n > 1000), "{seen:?}");
        for body in [BATCH, SINGLE] {
            assert_eq!(shape(body.as_bytes(), 64), shape_bytewise(body.as_bytes(), 64));
        }
    }
}
