//! The TOML front end: the same model as ulogd.conf, with typed values.
//!
//! toml_edit (already in the tree through `toml`) is used directly because it
//! keeps spans, so errors can name the line as they do for ulogd.conf.

use super::ulogd_file::GLOBAL_KEYS;
use super::{Config, ConfigError, Entry, PluginLine, RawValue, Section};
use std::path::Path;
use toml_edit::{ImDocument, Item, Value};

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> u32 {
    match span {
        Some(r) => text[..r.start.min(text.len())].matches('\n').count() as u32 + 1,
        None => 0,
    }
}

fn scalar(v: &Value) -> Option<RawValue> {
    match v {
        Value::String(s) => Some(RawValue::Text(s.value().clone())),
        Value::Integer(i) => Some(RawValue::Int(*i.value())),
        Value::Boolean(b) => Some(RawValue::Bool(*b.value())),
        _ => None,
    }
}

/// Parses TOML config text.
pub fn parse_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let err = |line: u32, msg: String| ConfigError {
        file: path.to_path_buf(),
        line,
        msg,
    };
    let doc = ImDocument::parse(text)
        .map_err(|e| err(line_of(text, e.span()), e.message().to_string()))?;
    let mut cfg = Config::empty(path);
    let root = doc.as_table();
    let Some(global) = root.get("global").and_then(Item::as_table) else {
        return Err(err(0, "no [global] table".into()));
    };
    for (k, item) in global.iter() {
        let n = line_of(
            text,
            item.span().or_else(|| global.key(k).and_then(|k| k.span())),
        );
        let list: Vec<&Value> = match item {
            Item::Value(Value::Array(a)) => a.iter().collect(),
            Item::Value(v) => vec![v],
            _ => return Err(err(n, format!("[global]: `{k}` must be a value"))),
        };
        match k {
            "logfile" => match list.as_slice() {
                [Value::String(s)] => cfg.logfile = Some((s.value().clone(), n)),
                _ => return Err(err(n, "logfile must be a string".into())),
            },
            "loglevel" => match list.as_slice() {
                [Value::Integer(i)] => cfg.loglevel = Some((*i.value(), n)),
                _ => return Err(err(n, "loglevel must be an integer".into())),
            },
            "metrics_address" => match list.as_slice() {
                [Value::String(s)] => {
                    let a = super::parse_metrics_address(s.value()).map_err(|m| err(n, m))?;
                    cfg.metrics = Some((a, n));
                }
                _ => return Err(err(n, "metrics_address must be a string".into())),
            },
            "plugin" | "stack" => {
                for v in list {
                    let n = line_of(text, v.span()).max(n);
                    let Value::String(s) = v else {
                        return Err(err(n, format!("{k} must be a string or a list of strings")));
                    };
                    let s = s.value().clone();
                    if k == "plugin" {
                        cfg.plugins.push(PluginLine { path: s, line: n });
                    } else {
                        cfg.add_stack(s, n).map_err(|m| err(n, m))?;
                    }
                }
            }
            other => {
                return Err(err(
                    n,
                    format!(
                        "[global]: unknown option `{other}`; valid options: {}",
                        GLOBAL_KEYS.join(", ")
                    ),
                ))
            }
        }
    }
    for (name, item) in root.iter() {
        if name == "global" {
            continue;
        }
        let hdr = line_of(text, item.span());
        let Some(t) = item.as_table() else {
            return Err(err(hdr, format!("`{name}` must be a [table] of options")));
        };
        let hdr = line_of(text, t.span()).max(hdr);
        let mut sec = Section {
            name: name.to_string(),
            line: hdr,
            entries: Vec::new(),
        };
        for (k, v) in t.iter() {
            let n = line_of(text, v.span());
            let value = v.as_value().and_then(scalar).ok_or_else(|| {
                err(
                    n,
                    format!("[{name}]: `{k}` must be a string, integer or boolean"),
                )
            })?;
            sec.entries.push(Entry {
                key: k.to_string(),
                value,
                line: n,
            });
        }
        cfg.sections.push(sec);
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_maps_onto_the_model() {
        let t = "[global]\nloglevel = 3\nstack = [\"log1:NFLOG,json1:JSON\"]\n\n[log1]\ngroup = 2\n\n[json1]\nfile = \"/tmp/a.json\"\nsync = true\n";
        let c = parse_toml(Path::new("x.toml"), t).unwrap();
        assert_eq!(c.loglevel.unwrap().0, 3);
        assert_eq!(c.stacks[0].line, 3);
        let j = c.section("json1").unwrap();
        assert_eq!(j.entries[0].line, 9);
        assert_eq!(j.entries[1].value, RawValue::Bool(true));
    }

    #[test]
    fn toml_errors_name_the_line() {
        let e = parse_toml(Path::new("x.toml"), "[global]\nstack = \"a\"\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_toml(Path::new("x.toml"), "[global]\nfoo = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown option"), "{e}");
        let e = parse_toml(Path::new("x.toml"), "[global]\n[a]\nx = [1]\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse_toml(Path::new("x.toml"), "[global]\nx = = 1\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }
}
