//! Shared bits of the benchmark binaries: a small flag parser (no CLI crate,
//! to keep the workspace's dependency tree small) and statistics.

pub mod pcapgen;

use std::collections::HashMap;
use std::str::FromStr;

/// `--name value` / `--name=value` / `--flag` arguments.
pub struct Args {
    values: HashMap<String, String>,
    prog: String,
    usage: &'static str,
}

impl Args {
    /// Parses `std::env::args()`. `usage` is printed for `-h`/`--help` and on
    /// errors.
    pub fn parse(usage: &'static str) -> Args {
        let mut it = std::env::args();
        let prog = it.next().unwrap_or_default();
        let mut values = HashMap::new();
        let rest: Vec<String> = it.collect();
        let mut i = 0;
        while i < rest.len() {
            let a = &rest[i];
            if a == "-h" || a == "--help" {
                println!("{usage}");
                std::process::exit(0);
            }
            let Some(name) = a.strip_prefix("--") else {
                die(&prog, usage, &format!("unexpected argument {a:?}"));
            };
            if let Some((k, v)) = name.split_once('=') {
                values.insert(k.to_string(), v.to_string());
            } else if rest.get(i + 1).is_some_and(|v| !v.starts_with("--")) {
                values.insert(name.to_string(), rest[i + 1].clone());
                i += 1;
            } else {
                values.insert(name.to_string(), String::new());
            }
            i += 1;
        }
        Args {
            values,
            prog,
            usage,
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of `--name`, or `default`. Exits with the usage on a bad
    /// value. Accepts `k`/`M` suffixes for numbers (`12.5k`, `1M`).
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> T {
        match self.values.get(name) {
            None => default,
            Some(v) => parse_num(v).unwrap_or_else(|| {
                die(
                    &self.prog,
                    self.usage,
                    &format!("bad value {v:?} for --{name}"),
                )
            }),
        }
    }
}

impl Args {
    /// The receivers `--daemons a,b` names, each word looked up in `names`
    /// (exits with the usage on an unknown one); without the flag, `rulogd`
    /// if its binary is found, `ulogd` if ulogd2 is installed, then `always`.
    pub fn daemons<T: Copy>(
        &self,
        names: &[(&str, T)],
        rulogd: T,
        ulogd: T,
        always: &[T],
    ) -> Vec<T> {
        let Some(list) = self.str("daemons") else {
            let mut t = Vec::new();
            if std::panic::catch_unwind(rulogd_tests::rulogd_bin).is_ok() {
                t.push(rulogd);
            }
            if std::path::Path::new(rulogd_tests::ULOGD_BIN).is_file() {
                t.push(ulogd);
            }
            t.extend_from_slice(always);
            return t;
        };
        list.split(',')
            .map(|d| {
                let d = d.trim();
                names
                    .iter()
                    .find(|(n, _)| *n == d)
                    .map(|&(_, t)| t)
                    .unwrap_or_else(|| {
                        die(&self.prog, self.usage, &format!("unknown daemon {d:?}"))
                    })
            })
            .collect()
    }
}

/// Parses a number with an optional `k` (10^3) or `M` (10^6) suffix.
pub fn parse_num<T: FromStr>(v: &str) -> Option<T> {
    let (num, mult) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1e3),
        Some(b'M' | b'm') => (&v[..v.len() - 1], 1e6),
        _ => return v.parse().ok(),
    };
    let x: f64 = num.parse().ok()?;
    format!("{}", (x * mult).round() as u64).parse().ok()
}

fn die(prog: &str, usage: &str, msg: &str) -> ! {
    eprintln!("{prog}: {msg}\n{usage}");
    std::process::exit(2);
}

/// (min, median, max) of a sample; the median of an even count is the mean
/// of the two middle values. None if empty.
pub fn min_med_max(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some((s[0], med, s[n - 1]))
}

/// Parses `key=value` pairs from a line such as `sent=100 secs=0.5`.
pub fn kv(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_stats() {
        assert_eq!(parse_num::<u64>("12.5k"), Some(12_500));
        assert_eq!(parse_num::<u64>("1M"), Some(1_000_000));
        assert_eq!(parse_num::<u32>("7"), Some(7));
        assert_eq!(min_med_max(&[3.0, 1.0, 2.0]), Some((1.0, 2.0, 3.0)));
        assert_eq!(min_med_max(&[4.0, 1.0]), Some((1.0, 2.5, 4.0)));
        assert_eq!(kv("sent=10 secs=0.5", "secs"), Some(0.5));
        assert_eq!(kv("sent=10 secs=0.5", "rate"), None);
    }
}
