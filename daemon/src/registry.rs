//! The built-in plugins, found by ulogd name (or by a ulogd `.so` path).

use rulogd_plugin::{PluginKind, Registration};

/// Every built-in plugin.
pub fn builtins() -> Vec<Registration> {
    let mut v = rulogd_input::registrations();
    v.extend(rulogd_filter::registrations());
    v.extend(rulogd_output::registrations());
    v
}

/// The plugin with ulogd name `name` (exact, then case-insensitive): a
/// built-in, else an external plugin loaded from a `plugin=` line.
pub fn find(name: &str) -> Option<Registration> {
    let all = builtins();
    all.iter()
        .find(|r| r.info.name == name)
        .or_else(|| all.iter().find(|r| r.info.name.eq_ignore_ascii_case(name)))
        .copied()
        .or_else(|| crate::external::find(name))
}

/// Maps a ulogd plugin path such as `/usr/lib/ulogd/ulogd_output_JSON.so`
/// (or a bare name such as `JSON`) to the plugin name it stands for.
pub fn name_from_path(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.strip_suffix(".so").unwrap_or(file);
    stem.rsplit('_').next().unwrap_or(stem)
}

/// Names of every built-in (then every loaded external plugin) of a kind,
/// for error messages.
pub fn names(kind: Option<PluginKind>) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = builtins()
        .iter()
        .filter(|r| kind.is_none_or(|k| r.info.kind == k))
        .map(|r| r.info.name)
        .collect();
    v.extend(crate::external::names(kind));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulogd_paths_map_to_names() {
        assert_eq!(
            name_from_path("/usr/lib/x86_64-linux-gnu/ulogd/ulogd_output_JSON.so"),
            "JSON"
        );
        assert_eq!(name_from_path("ulogd_raw2packet_BASE.so"), "BASE");
        assert_eq!(name_from_path("ulogd_inppkt_NFLOG.so"), "NFLOG");
        assert_eq!(name_from_path("IP2STR"), "IP2STR");
    }

    #[test]
    fn every_int_option_declares_its_range() {
        let mut unbounded = Vec::new();
        for r in builtins() {
            for o in r.info.options {
                if o.ty == rulogd_plugin::OptType::Int && !o.is_bounded() {
                    unbounded.push(format!("{}.{}", r.info.name, o.name));
                }
            }
        }
        assert!(
            unbounded.is_empty(),
            "integer options without .range()/.flag(): {unbounded:?}"
        );
    }

    #[test]
    fn every_default_passes_its_own_constraints() {
        for r in builtins() {
            let all = rulogd_plugin::Options::defaults(r.info.options).unwrap();
            for o in r.info.options.iter().filter(|o| !o.mandatory) {
                let v = all.get(o.name).unwrap();
                if let Err(e) = o.validate(v, &all) {
                    panic!("{}.{} default {:?}: {e}", r.info.name, o.name, o.default);
                }
            }
        }
    }
}
