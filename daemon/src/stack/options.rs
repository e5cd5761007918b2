//! Turning a config section into a plugin's validated [`Options`].

use crate::config::{Config, ConfigError, RawValue};
use rulogd_plugin::{OptType, Options, PluginInfo};

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
    let Some(sec) = cfg.section(id) else {
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
        return Ok(opts);
    };
    for e in &sec.entries {
        let Some(def) = info.options.iter().find(|o| o.name == e.key) else {
            return Err(cfg.err(
                e.line,
                format!("[{id}]: unknown option `{}`; {}", e.key, valid()),
            ));
        };
        let res = match (&e.value, def.ty) {
            (RawValue::Int(i), OptType::Int) => {
                opts.set_int(def, *i, e.line);
                Ok(())
            }
            (v, _) => opts.set(def, &v.to_string(), e.line),
        };
        res.map_err(|m| cfg.err(e.line, format!("[{id}]: option `{}`: {m}", e.key)))?;
    }
    for o in info.options.iter().filter(|o| o.mandatory) {
        if !opts.is_set(o.name) {
            return Err(cfg.err(
                sec.line,
                format!("[{id}]: mandatory option `{}` not found", o.name),
            ));
        }
    }
    Ok(opts)
}
