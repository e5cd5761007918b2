//! Sections no stack uses: a misspelt `[jsno1]` would otherwise be ignored
//! and its instance run on defaults (writing where nobody looks).
//!
//! ulogd2's own example config keeps a section for every plugin, most of
//! them for commented-out stacks, so a section shaped like an instance of a
//! known plugin is only a notice; anything else is an error.

use crate::config::{Config, ConfigError};

/// The sections ulogd2's example `ulogd.conf` ships (Debian's /etc/ulogd.conf).
const ULOGD_EXAMPLE_SECTIONS: &[&str] = &[
    "ct1",
    "ct2",
    "log1",
    "log2",
    "log3",
    "ulog1",
    "nuauth1",
    "emu1",
    "op1",
    "gp1",
    "xml1",
    "json1",
    "pcap1",
    "mysql1",
    "mysql2",
    "pgsql1",
    "pgsql2",
    "pgsql3",
    "pgsql4",
    "dbi1",
    "sqlite3_ct",
    "sqlite3_pkt",
    "sys1",
    "sys2",
    "nacct1",
    "mark1",
    "acct1",
    "graphite1",
];

/// ulogd2 plugins rulogd does not build in, whose instances may still have
/// sections in a migrated config.
const OTHER_ULOGD_PLUGINS: &[&str] = &["ULOG", "DBI", "IP2HBIN"];

/// Levenshtein distance (names are short: at most 30 characters).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Whether `name` looks like an instance of a known plugin: one of the
/// sections ulogd2's example ships, or a plugin name in lower case followed
/// by digits (`pgsql2`, `json`, `nflog10`).
fn looks_spare(name: &str, plugins: &[&str]) -> bool {
    if ULOGD_EXAMPLE_SECTIONS.contains(&name) {
        return true;
    }
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    !stem.is_empty()
        && stem.bytes().all(|b| !b.is_ascii_uppercase())
        && plugins
            .iter()
            .chain(OTHER_ULOGD_PLUGINS)
            .any(|p| p.eq_ignore_ascii_case(stem))
}

/// Checks every section against the instances the stacks name: a used one
/// is fine, a spare one (see [`looks_spare`]) is logged as a notice, any
/// other is an error at its header line, with the nearest instance name
/// when one is within two edits.
pub fn check_sections(cfg: &Config, plugins: &[&str]) -> Result<(), ConfigError> {
    let mut ids: Vec<&str> = Vec::new();
    for e in cfg.stacks.iter().flat_map(|s| &s.elems) {
        if !ids.contains(&e.id.as_str()) {
            ids.push(&e.id);
        }
    }
    for sec in &cfg.sections {
        let name = sec.name.as_str();
        if ids.contains(&name) {
            continue;
        }
        if looks_spare(name, plugins) {
            // No "did you mean" here: ulogd2's example keeps [log2] beside
            // a used [log1] on purpose.
            log::warn!(
                "{}:{}: spare section [{name}]: no stack uses it",
                cfg.path.display(),
                sec.line
            );
            continue;
        }
        let near = ids
            .iter()
            .map(|id| (distance(name, id), *id))
            .filter(|(d, _)| *d <= 2)
            .min_by_key(|(d, _)| *d)
            .map(|(_, id)| id);
        let hint = match near {
            Some(id) => format!("; did you mean [{id}]?"),
            None => format!("; the stacks name: {}", ids.join(", ")),
        };
        return Err(cfg.err(
            sec.line,
            format!("section [{name}] is not an instance of any stack{hint}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_ulogd;
    use std::path::Path;

    const PLUGINS: &[&str] = &["NFLOG", "BASE", "JSON", "PGSQL", "LOGEMU", "SQLITE3"];

    fn run(text: &str) -> Result<(), ConfigError> {
        let cfg = parse_ulogd(Path::new("s.conf"), text).unwrap();
        check_sections(&cfg, PLUGINS)
    }

    #[test]
    fn edit_distance() {
        assert_eq!(distance("json1", "json1"), 0);
        assert_eq!(distance("jsno1", "json1"), 2);
        assert_eq!(distance("log1", "log12"), 1);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn a_misspelt_section_is_an_error_with_a_suggestion() {
        let e =
            run("[global]\nstack=log1:NFLOG,json1:JSON\n[jsno1]\nfile=\"/tmp/x\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.to_string().contains("did you mean [json1]?"), "{e}");
    }

    #[test]
    fn an_orphan_section_is_an_error_naming_the_stacks() {
        let e = run("[global]\nstack=log1:NFLOG,json1:JSON\n[log1]\ngroup=1\n\n[orphan]\nfoo=1\n")
            .unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        let m = e.to_string();
        assert!(m.starts_with("s.conf:6: section [orphan]"), "{m}");
        assert!(m.contains("log1, json1"), "{m}");
    }

    #[test]
    fn spare_instances_of_known_plugins_pass() {
        for name in [
            "pgsql1",
            "pgsql4",
            "emu1",
            "sqlite3_ct",
            "json",
            "json2",
            "ulog1",
            "dbi1",
            "nflog12",
        ] {
            let t = format!("[global]\nstack=log1:NFLOG,json1:JSON\n[{name}]\nx=1\n");
            assert!(run(&t).is_ok(), "{name}");
        }
        for name in ["Json2", "jsonx", "pgsql_1", "foo1"] {
            let t = format!("[global]\nstack=log1:NFLOG,json1:JSON\n[{name}]\nx=1\n");
            assert!(run(&t).is_err(), "{name}");
        }
    }
}
