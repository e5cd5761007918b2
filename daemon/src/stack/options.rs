//! Turning a config section into a plugin's validated [`Options`]: types,
//! then every declared constraint, each error at the option's own line.

use crate::config::{Config, ConfigError, RawValue, Section};
use rulogd_plugin::{OptType, OptionDef, Options, PluginInfo};

/// Reads one entry into `opts`, refusing a value of the wrong type.
fn set_entry(
    cfg: &Config,
    opts: &mut Options,
    def: &'static OptionDef,
    value: &RawValue,
    line: u32,
) -> Result<(), String> {
    match (value, def.ty) {
        (RawValue::Int(i), OptType::Int) => {
            opts.set_int(def, *i, line);
            Ok(())
        }
        (RawValue::Bool(b), OptType::Int) if def.flag => {
            opts.set_int(def, *b as i64, line);
            Ok(())
        }
        (RawValue::Bool(b), OptType::Int) => Err(format!(
            "`{b}` is a boolean, but `{}` takes an integer",
            def.name
        )),
        (RawValue::Bool(b), OptType::Str) => Err(format!(
            "`{b}` is a boolean, but `{}` takes a string",
            def.name
        )),
        (RawValue::Text(t), OptType::Int) if cfg.is_toml() => Err(format!(
            "\"{t}\" is a string, but `{}` takes an integer (write it without quotes)",
            def.name
        )),
        (v, _) => opts.set(def, &v.to_string(), line),
    }
}

/// Validates the `[id]` section against the plugin's option table.
///
/// `stack_line` locates the error when the section itself is missing.
pub fn options_for(
    cfg: &Config,
    id: &str,
    info: &'static PluginInfo,
    stack_line: u32,
) -> Result<Options, ConfigError> {
    let mut opts = Options::defaults(info.options).map_err(|m| cfg.err(0, m))?;
    let valid = || {
        if info.options.is_empty() {
            format!("{} takes no options", info.name)
        } else {
            let names: Vec<&str> = info.options.iter().map(|o| o.name).collect();
            format!("valid options for {}: {}", info.name, names.join(", "))
        }
    };
    let sec = cfg.section(id);
    let Some(sec) = sec else {
        let missing: Vec<&str> = info
            .options
            .iter()
            .filter(|o| o.mandatory)
            .map(|o| o.name)
            .collect();
        if !missing.is_empty() {
            return Err(cfg.err(
                stack_line,
                format!(
                    "instance `{id}` ({}) has no [{id}] section, but needs: {}",
                    info.name,
                    missing.join(", ")
                ),
            ));
        }
        validate(cfg, id, info, &opts, None, stack_line)?;
        return Ok(opts);
    };
    for e in &sec.entries {
        let Some(def) = info.options.iter().find(|o| o.name == e.key) else {
            return Err(cfg.err(
                e.line,
                format!("[{id}]: unknown option `{}`; {}", e.key, valid()),
            ));
        };
        set_entry(cfg, &mut opts, def, &e.value, e.line)
            .map_err(|m| cfg.err(e.line, format!("[{id}]: option `{}`: {m}", e.key)))?;
    }
    for o in info.options.iter().filter(|o| o.mandatory) {
        if !opts.is_set(o.name) {
            return Err(cfg.err(
                sec.line,
                format!("[{id}]: mandatory option `{}` not found", o.name),
            ));
        }
    }
    validate(cfg, id, info, &opts, Some(sec), stack_line)?;
    Ok(opts)
}

/// Checks every option's constraints once all are set (a check may compare
/// two). A default that fails (it can only through another option) is
/// reported at the section, else at the stack line.
fn validate(
    cfg: &Config,
    id: &str,
    info: &'static PluginInfo,
    opts: &Options,
    sec: Option<&Section>,
    stack_line: u32,
) -> Result<(), ConfigError> {
    for def in info.options {
        let Some(v) = opts.get(def.name) else {
            continue;
        };
        if let Err(m) = def.validate(v, opts) {
            let (line, how) = match opts.line_of(def.name) {
                Some(l) => (l, ""),
                None => (sec.map_or(stack_line, |s| s.line), " (left at its default)"),
            };
            return Err(cfg.err(line, format!("[{id}]: option `{}`{how}: {m}", def.name)));
        }
    }
    Ok(())
}

/// One built instance as the cross-instance checks see it.
pub(crate) struct Seen<'a> {
    /// Instance id.
    pub id: &'a str,
    /// The plugin.
    pub info: &'static PluginInfo,
    /// Its options.
    pub options: &'a Options,
    /// The stack line that first named it.
    pub line: u32,
}

/// Refuses two instances of one plugin sharing a value of a `unique`
/// option (two NFLOG instances on one group: the kernel gives the group to
/// one socket only, so the second would fail at start).
pub(crate) fn check_unique(cfg: &Config, seen: &[Seen]) -> Result<(), ConfigError> {
    for (i, b) in seen.iter().enumerate() {
        for def in b.info.options.iter().filter(|d| d.unique) {
            let Some(v) = b.options.get(def.name) else {
                continue;
            };
            let clash = seen[..i].iter().find(|a| {
                a.info.name == b.info.name && a.id != b.id && a.options.get(def.name) == Some(v)
            });
            if let Some(a) = clash {
                let at = |s: &Seen| {
                    s.options
                        .line_of(def.name)
                        .or_else(|| cfg.section(s.id).map(|x| x.line))
                        .unwrap_or(s.line)
                };
                return Err(cfg.err(
                    at(b),
                    format!(
                        "[{}]: option `{}`: {} {} is already used by instance `{}` (line {}); each {} instance needs its own",
                        b.id,
                        def.name,
                        def.name,
                        v,
                        a.id,
                        at(a),
                        b.info.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_text, ConfigError};
    use std::path::Path;

    fn plan(name: &str, text: &str) -> Result<(), ConfigError> {
        let cfg = parse_text(Path::new(name), text)?;
        super::super::plan(&cfg).map(|_| ())
    }

    const TOML: &str = "[global]\nstack = [\"log1:NFLOG,base1:BASE,json1:JSON\"]\n[log1]\n";

    #[test]
    fn toml_values_must_have_the_option_type() {
        for (v, ok) in [
            ("group = 3", true),
            ("unbind = false", true),
            ("group = true", false),
            ("group = \"3\"", false),
            ("group = -1", false),
        ] {
            let r = plan("t.toml", &format!("{TOML}{v}\n"));
            assert_eq!(r.is_ok(), ok, "{v}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.line, 4, "{v}: {e}");
            }
        }
        // A string option takes a TOML integer as its text (port = 2003).
        let t = "[global]\nstack = [\"log1:NFLOG,base1:BASE,json1:JSON\"]\n[json1]\nport = 2003\nsync = true\n";
        plan("t.toml", t).unwrap();
        let e = plan("t.toml", &t.replace("2003", "true")).unwrap_err();
        assert!(e.to_string().contains("takes a string"), "{e}");
    }

    #[test]
    fn a_cross_option_check_names_the_option_and_a_default_the_section() {
        let t = "[global]\nstack=log1:NFLOG,base1:BASE,json1:JSON\n[log1]\nbufsize=8192\nnetlink_nlbufsiz=16384\n";
        let e = plan("c.conf", t).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.to_string().contains("exceeds bufsize 8192"), "{e}");
        let t = "[global]\nstack=q1:NFQUEUE,base1:BASE,json1:JSON\n[q1]\ncopy_range=65535\n";
        plan("q.conf", t).unwrap();
        let e = plan("q.conf", &format!("{t}bufsize=1000\n")).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
    }

    #[test]
    fn one_instance_per_unique_value_but_one_id_may_recur() {
        let two = "[global]\nstack=a:NFLOG,base1:BASE,j1:JSON\nstack=b:NFLOG,base1:BASE,j1:JSON\n[a]\ngroup=7\n[b]\ngroup=7\n";
        let e = plan("u.conf", two).unwrap_err();
        assert_eq!(e.line, 7, "{e}");
        assert!(
            e.to_string()
                .contains("already used by instance `a` (line 5)"),
            "{e}"
        );
        plan("u.conf", &two.replace("[b]\ngroup=7", "[b]\ngroup=8")).unwrap();
        // The same instance in two stacks is one instance, not a clash.
        let same = "[global]\nstack=a:NFLOG,base1:BASE,j1:JSON\nstack=a:NFLOG,base1:BASE,j2:JSON\n[a]\ngroup=7\n";
        plan("u.conf", same).unwrap();
    }
}
