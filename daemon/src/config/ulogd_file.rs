//! The ulogd.conf syntax, as ulogd2 reads it, with its traps turned into
//! errors that name the line (see docs/COMPATIBILITY.md for each difference).

use super::{Config, ConfigError, Entry, PluginLine, RawValue, Section};
use std::path::Path;

/// The `[global]` keys ulogd2 knows.
pub(crate) const GLOBAL_KEYS: &[&str] =
    &["logfile", "loglevel", "metrics_address", "plugin", "stack"];

/// Options ulogd 1.x kept in `[global]`; named in the error so the fix is obvious.
const ULOGD1_GLOBALS: &[&str] = &["rmem", "bufsize", "nlgroup", "syslogfile", "syslogsync"];

fn is_delim(c: char) -> bool {
    c == ' ' || c == '\t' || c == '='
}

/// Parses one `key value` line into (key, value); `Err` is the message.
fn split_kv(line: &str) -> Result<(String, String), String> {
    let key_end = line.find(is_delim).unwrap_or(line.len());
    let key = &line[..key_end];
    let rest = line[key_end..].trim_start_matches(is_delim);
    if rest.is_empty() {
        return Err(format!("option `{key}` has no value"));
    }
    let value = if let Some(q) = rest.strip_prefix('"') {
        match q.find('"') {
            Some(end) => q[..end].to_string(),
            None => return Err(format!("option `{key}`: unterminated quoted value")),
        }
    } else {
        // Like ulogd: the value is one word; anything after it (a comment) is ignored.
        rest.split([' ', '\t']).next().unwrap_or("").to_string()
    };
    Ok((key.to_string(), value))
}

/// Parses ulogd.conf text.
pub fn parse_ulogd(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let err = |line: u32, msg: String| ConfigError {
        file: path.to_path_buf(),
        line,
        msg,
    };
    let mut cfg = Config::empty(path);
    let mut current: Option<Section> = None;
    let mut in_global = false;
    let mut saw_global = false;

    for (i, raw) in text.lines().enumerate() {
        let n = i as u32 + 1;
        let line = raw.trim_end_matches(['\r', '\n']).trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(h) = line.strip_prefix('[') {
            let Some(name) = h.split(']').next().filter(|_| h.contains(']')) else {
                return Err(err(
                    n,
                    format!("section header `{line}` has no closing `]`"),
                ));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(err(n, "empty section name".into()));
            }
            if let Some(s) = current.take() {
                cfg.sections.push(s);
            }
            if name == "global" {
                if saw_global {
                    return Err(err(n, "section [global] appears twice".into()));
                }
                saw_global = true;
                in_global = true;
            } else {
                if let Some(prev) = cfg.section(name) {
                    return Err(err(
                        n,
                        format!(
                            "section [{name}] appears twice (first at line {})",
                            prev.line
                        ),
                    ));
                }
                in_global = false;
                current = Some(Section {
                    name: name.to_string(),
                    line: n,
                    entries: Vec::new(),
                });
            }
            continue;
        }
        let (key, value) = split_kv(line).map_err(|m| err(n, m))?;
        if in_global {
            match key.as_str() {
                "logfile" => {
                    if let Some((_, l)) = &cfg.logfile {
                        return Err(err(
                            n,
                            format!("option `logfile` occurred more than once (first at line {l})"),
                        ));
                    }
                    cfg.logfile = Some((value, n));
                }
                "loglevel" => {
                    if let Some((_, l)) = &cfg.loglevel {
                        return Err(err(
                            n,
                            format!(
                                "option `loglevel` occurred more than once (first at line {l})"
                            ),
                        ));
                    }
                    let v = rulogd_plugin::options::parse_int(&value)
                        .map_err(|m| err(n, format!("loglevel: {m}")))?;
                    cfg.loglevel = Some((v, n));
                }
                "metrics_address" => {
                    if let Some((_, l)) = &cfg.metrics {
                        return Err(err(
                            n,
                            format!("option `metrics_address` occurred more than once (first at line {l})"),
                        ));
                    }
                    let a = super::parse_metrics_address(&value).map_err(|m| err(n, m))?;
                    cfg.metrics = Some((a, n));
                }
                "plugin" => cfg.plugins.push(PluginLine {
                    path: value,
                    line: n,
                }),
                "stack" => cfg.add_stack(value, n).map_err(|m| err(n, m))?,
                other => {
                    let hint = if ULOGD1_GLOBALS.contains(&other) {
                        " (a ulogd 1.x option: it belongs in the input plugin's own section)"
                    } else {
                        ""
                    };
                    return Err(err(
                        n,
                        format!(
                            "[global]: unknown option `{other}`{hint}; valid options: {}",
                            GLOBAL_KEYS.join(", ")
                        ),
                    ));
                }
            }
        } else if let Some(sec) = current.as_mut() {
            if let Some(prev) = sec.entries.iter().find(|e| e.key == key) {
                return Err(err(
                    n,
                    format!(
                        "[{}]: option `{key}` occurred more than once (first at line {})",
                        sec.name, prev.line
                    ),
                ));
            }
            sec.entries.push(Entry {
                key,
                value: RawValue::Text(value),
                line: n,
            });
        } else {
            return Err(err(n, format!("`{line}` is outside any [section]")));
        }
    }
    if let Some(s) = current.take() {
        cfg.sections.push(s);
    }
    if !saw_global {
        return Err(err(0, "no [global] section".into()));
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        parse_ulogd(Path::new("t.conf"), t)
    }

    #[test]
    fn reads_ulogd_forms() {
        let c = parse(
            "# c\n[global]\nlogfile=\"/tmp/x.log\"\nloglevel = 3\nplugin=\"/usr/lib/x86_64-linux-gnu/ulogd/ulogd_output_JSON.so\"\n\
             stack=log1:NFLOG,base1:BASE,json1:JSON\n\n[log1]\ngroup 2 # comment\n[json1]\nfile=\"/a b\"\nsync==1",
        )
        .unwrap();
        assert_eq!(c.logfile.as_ref().unwrap().0, "/tmp/x.log");
        assert_eq!(c.loglevel.unwrap().0, 3);
        assert_eq!(c.stacks[0].elems.len(), 3);
        assert_eq!(c.stacks[0].elems[2].plugin, "JSON");
        let log1 = c.section("log1").unwrap();
        assert_eq!(log1.entries[0].value, RawValue::Text("2".into()));
        let j = c.section("json1").unwrap();
        assert_eq!(j.entries[0].value, RawValue::Text("/a b".into()));
        assert_eq!(j.entries[1].value, RawValue::Text("1".into()));
        assert_eq!(j.entries[1].line, 12);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("[global]\nstack=log1NFLOG\n", 2, "id:PLUGIN"),
            ("[global]\nrmem=1\n", 2, "ulogd 1.x"),
            (
                "[global]\nstack=a:NFLOG,b:JSON\n[a]\ngroup=1\ngroup=2\n",
                5,
                "more than once",
            ),
            ("[global]\n[a\n", 2, "closing"),
            ("[global]\n[a]\nfile=\"x\n", 3, "unterminated"),
            ("[global]\n[a]\nfile=\n", 3, "no value"),
            ("x=1\n[global]\n", 1, "outside"),
            ("[global]\nloglevel=abc\n", 2, "not an integer"),
            ("[global]\n[a]\n[a]\n", 3, "twice"),
        ];
        for (text, line, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
            assert!(e.to_string().starts_with("t.conf:"), "{e}");
        }
    }

    #[test]
    fn last_line_without_newline_is_fine() {
        let c = parse("[global]\nstack=a:NFLOG,b:JSON").unwrap();
        assert_eq!(c.stacks.len(), 1);
    }
}
