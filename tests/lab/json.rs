//! Reading JSON lines and comparing two daemons' records key by key.
//!
//! A [`Record`] keeps the object's key order: ulogd writes keys in stack
//! order, and a drop-in successor must write the same line, so the order is
//! compared too.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Keys that differ between two runs for the same packet by nature, never
/// because of a bug: the microseconds of the logging time (the kernel gives
/// no timestamp for locally generated packets, so the daemon's clock is used)
/// and sequence numbers (per socket). `timestamp` and `oob.time.sec` are
/// compared with a tolerance instead of being ignored.
pub const ALWAYS_IGNORED: &[&str] = &["oob.time.usec", "oob.seq.local", "oob.seq.global"];

/// Allowed distance between two records' times, in seconds.
pub const TIME_TOLERANCE_S: f64 = 2.0;

/// One JSON line: an object with its keys in file order.
#[derive(Debug, Clone)]
pub struct Record {
    pub fields: Vec<(String, Value)>,
    pub line: String,
}

struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<String, Value>()? {
                    v.push((k, val));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

impl Record {
    pub fn parse(line: &str) -> Result<Record, String> {
        let o: Ordered = serde_json::from_str(line).map_err(|e| e.to_string())?;
        Ok(Record {
            fields: o.0,
            line: line.to_string(),
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(k, _)| k.as_str())
    }

    /// `u64` that must be there: panics with the whole line otherwise.
    pub fn req_u64(&self, key: &str) -> u64 {
        self.u64(key)
            .unwrap_or_else(|| panic!("no integer {key:?} in {}", self.line))
    }

    /// `str` that must be there: panics with the whole line otherwise.
    pub fn req_str(&self, key: &str) -> &str {
        self.str(key)
            .unwrap_or_else(|| panic!("no string {key:?} in {}", self.line))
    }
}

/// Every line of a JSON file as a record. Panics on a line that is not a
/// JSON object (a torn or garbled line is always a bug) or a missing final
/// newline.
pub fn read_records(path: &Path) -> Vec<Record> {
    let (recs, bad) = read_records_lenient(path);
    if let Some((n, l)) = bad.first() {
        panic!(
            "{}: line {n} is not a JSON object ({} bad lines): {l:?}",
            path.display(),
            bad.len()
        );
    }
    recs
}

/// Records and the bad lines (1-based line number, text) of a file; a final
/// fragment without newline counts as a bad line. A missing file is empty.
pub fn read_records_lenient(path: &Path) -> (Vec<Record>, Vec<(usize, String)>) {
    let bytes = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let mut recs = Vec::new();
    let mut bad = Vec::new();
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let torn_tail = i + 1 == lines.len() && !complete;
        match Record::parse(l) {
            Ok(r) if !torn_tail => recs.push(r),
            _ => bad.push((i + 1, l.to_string())),
        }
    }
    (recs, bad)
}

/// Seconds (as if UTC; both sides are in the same zone) and the "shape" of a
/// ulogd timestamp `YYYY-MM-DDTHH:MM:SS[.uuuuuu][±HHMM]`: whether it has
/// microseconds, and its zone suffix. Two daemons must agree on the shape.
fn parse_timestamp(s: &str) -> Option<(f64, bool, &str)> {
    let num = |a: usize, b: usize| -> Option<i64> { s.get(a..b)?.parse().ok() };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut rest = s.get(19..)?;
    let mut frac = 0.0;
    let has_usec = rest.starts_with('.');
    if has_usec {
        let digits = rest[1..].chars().take_while(char::is_ascii_digit).count();
        frac = format!("0.{}", &rest[1..1 + digits]).parse().ok()?;
        rest = &rest[1 + digits..];
    }
    // days_from_civil (H. Hinnant), valid for the proleptic Gregorian calendar.
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = (days * 86_400 + h * 3600 + mi * 60 + sec) as f64 + frac;
    Some((t, has_usec, rest))
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "(absent)".to_string(), Value::to_string)
}

/// Differences between two records (empty if they match): every key is
/// compared for equality except [`ALWAYS_IGNORED`] and `allowed`;
/// `timestamp`/`@timestamp` and `oob.time.sec` within
/// [`TIME_TOLERANCE_S`]; and the order of the keys both have.
pub fn compare_records(
    a: &Record,
    b: &Record,
    allowed: &[&str],
    labels: (&str, &str),
) -> Vec<String> {
    let skip = |k: &str| ALWAYS_IGNORED.contains(&k) || allowed.contains(&k);
    let mut diffs = Vec::new();
    let mut keys: Vec<&str> = a.keys().collect();
    keys.extend(b.keys().filter(|k| !a.has(k)));
    for k in keys.into_iter().filter(|k| !skip(k)) {
        let (va, vb) = (a.get(k), b.get(k));
        let same = match (k, va, vb) {
            ("timestamp" | "@timestamp", Some(Value::String(x)), Some(Value::String(y))) => {
                match (parse_timestamp(x), parse_timestamp(y)) {
                    (Some((tx, ux, zx)), Some((ty, uy, zy))) => {
                        ux == uy && zx == zy && (tx - ty).abs() <= TIME_TOLERANCE_S
                    }
                    _ => x == y,
                }
            }
            ("oob.time.sec", Some(x), Some(y)) => match (x.as_i64(), y.as_i64()) {
                (Some(x), Some(y)) => (x - y).abs() as f64 <= TIME_TOLERANCE_S,
                _ => x == y,
            },
            _ => va == vb,
        };
        if !same {
            diffs.push(format!(
                "  {k}: {}={} {}={}",
                labels.0,
                show(va),
                labels.1,
                show(vb)
            ));
        }
    }
    let order_a: Vec<&str> = a.keys().filter(|k| b.has(k) && !skip(k)).collect();
    let order_b: Vec<&str> = b.keys().filter(|k| a.has(k) && !skip(k)).collect();
    if order_a != order_b {
        diffs.push(format!(
            "  key order differs:\n    {}: {}\n    {}: {}",
            labels.0,
            order_a.join(", "),
            labels.1,
            order_b.join(", ")
        ));
    }
    diffs
}

/// Compares two daemons' outputs for the same packets. Records are grouped
/// by `oob.prefix` (each prefix is one rule, i.e. one NFLOG group per daemon;
/// the kernel keeps order within a group but not between groups) and compared
/// pairwise in file order. Returns a readable report of the first mismatches.
pub fn compare_streams(
    a: &[Record],
    b: &[Record],
    allowed: &[&str],
    labels: (&str, &str),
) -> Result<(), String> {
    fn by_prefix(r: &[Record]) -> BTreeMap<String, Vec<&Record>> {
        let mut m: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
        for x in r {
            let p = x.str("oob.prefix").unwrap_or("(no prefix)").to_string();
            m.entry(p).or_default().push(x);
        }
        m
    }
    let (pa, pb) = (by_prefix(a), by_prefix(b));
    let mut report = Vec::new();
    let mut bad_pairs = 0;
    let mut pairs = 0;
    // How many pairs each key differs in: a systematic difference (one key
    // wrong in every record) reads better as one line than as 5 examples.
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    let prefixes: std::collections::BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
    for p in prefixes {
        let (ra, rb) = (
            pa.get(p).map_or(&[][..], |v| &v[..]),
            pb.get(p).map_or(&[][..], |v| &v[..]),
        );
        if ra.len() != rb.len() {
            report.push(format!(
                "prefix {p:?}: {} has {} records, {} has {}",
                labels.0,
                ra.len(),
                labels.1,
                rb.len()
            ));
        }
        for (i, (x, y)) in ra.iter().zip(rb).enumerate() {
            pairs += 1;
            let d = compare_records(x, y, allowed, labels);
            if d.is_empty() {
                continue;
            }
            for line in &d {
                let key = line
                    .trim_start()
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_string();
                *per_key.entry(key).or_default() += 1;
            }
            bad_pairs += 1;
            if bad_pairs <= 3 {
                report.push(format!(
                    "prefix {p:?} record {i}:\n{}\n  {}: {}\n  {}: {}",
                    d.join("\n"),
                    labels.0,
                    x.line,
                    labels.1,
                    y.line
                ));
            }
        }
    }
    if bad_pairs > 3 {
        report.push(format!("... {} more mismatching records", bad_pairs - 3));
    }
    if !per_key.is_empty() {
        let summary: Vec<String> = per_key
            .iter()
            .map(|(k, n)| format!("{k} in {n}/{pairs}"))
            .collect();
        report.insert(0, format!("differing keys: {}", summary.join(", ")));
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_compares() {
        let a = Record::parse(
            r#"{"timestamp": "2026-11-23T16:04:23.710082", "b": 1, "a": 2, "oob.time.usec": 5}"#,
        )
        .unwrap();
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            ["timestamp", "b", "a", "oob.time.usec"]
        );
        let b = Record::parse(
            r#"{"timestamp": "2026-11-23T16:04:24.900000", "b": 1, "a": 2, "oob.time.usec": 9}"#,
        )
        .unwrap();
        assert!(compare_records(&a, &b, &[], ("x", "y")).is_empty());
        let c =
            Record::parse(r#"{"timestamp": "2026-11-23T16:04:23+0100", "a": 2, "b": 3}"#).unwrap();
        let d = compare_records(&a, &c, &[], ("x", "y"));
        // timestamp shape (zone suffix), b's value, key order; the absent
        // oob.time.usec is always ignored.
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(compare_records(&a, &c, &["b", "timestamp"], ("x", "y")).is_empty());
    }

    #[test]
    fn timestamp_parse() {
        let (t, u, z) = parse_timestamp("1970-01-02T00:00:01.500000-0330").unwrap();
        assert_eq!((t, u, z), (86_401.5, true, "-0330"));
        let (t, u, z) = parse_timestamp("2026-11-23T16:04:23").unwrap();
        assert_eq!(
            (t as i64 % 86_400, u, z),
            (16 * 3600 + 4 * 60 + 23, false, "")
        );
    }
}
