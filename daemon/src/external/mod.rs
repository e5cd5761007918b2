//! External plugins: shared objects speaking the C ABI of
//! `include/rulogd_plugin.h`, loaded with libloading from `plugin=` lines.
//!
//! Loading checks everything the daemon will rely on (ABI version, name,
//! key and option tables, callbacks) and turns the descriptor into the same
//! [`PluginInfo`] and [`Registration`] a built-in has, so planning, key
//! binding, `-t` and `--info` treat both alike. A loaded library is never
//! unloaded: its descriptor and code stay mapped for the life of the process.

mod host;
mod instance;

use crate::config::{Config, ConfigError};
use rulogd_plugin::{
    Builder, KeyDef, KeyFlags, KeyType, OptionDef, PluginInfo, PluginKind, Registration,
};
use rulogd_plugin_abi as abi;
use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use thiserror::Error;

/// Why a plugin file could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// dlopen failed.
    #[error("cannot load: {0}")]
    Open(String),
    /// The descriptor symbol is missing.
    #[error("no `rulogd_plugin_descriptor` symbol: not a rulogd plugin ({0})")]
    NoSymbol(String),
    /// The descriptor function returned NULL.
    #[error("rulogd_plugin_descriptor() returned NULL")]
    NullDescriptor,
    /// Built against another ABI version.
    #[error("plugin ABI version {plugin}, but this rulogd speaks plugin ABI version {daemon}; rebuild the plugin against this rulogd's rulogd_plugin.h")]
    Version {
        /// The plugin's version.
        plugin: u32,
        /// Ours.
        daemon: u32,
    },
    /// The descriptor does not hold what ABI 1 requires.
    #[error("bad descriptor: {0}")]
    Descriptor(String),
    /// The plugin's name is a built-in's or another plugin's.
    #[error("plugin name `{name}` {with}")]
    Clash {
        /// The name.
        name: String,
        /// What it clashes with.
        with: String,
    },
}

/// One loaded plugin.
pub(crate) struct Loaded {
    /// The file as named on the `plugin=` line.
    pub path: PathBuf,
    /// The descriptor, inside the never-unloaded library.
    pub desc: &'static abi::plugin,
    /// What `--info` prints and planning reads.
    pub info: &'static PluginInfo,
    /// The declared output key types, by output key number.
    pub out_types: Vec<KeyType>,
}

// SAFETY: the descriptor is immutable data in a library that stays loaded;
// the header makes its callbacks callable from the threads it lists.
unsafe impl Send for Loaded {}
unsafe impl Sync for Loaded {}

static LOADED: Mutex<Vec<&'static Loaded>> = Mutex::new(Vec::new());

fn loaded() -> Vec<&'static Loaded> {
    LOADED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Whether a `plugin=` value names an external plugin to load, rather than
/// a ulogd2 plugin that maps to a built-in: a `ulogd_*.so` file, a bare
/// name, or any file whose ulogd-style name (`…_JSON.so`) is a built-in's.
pub fn is_external(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    let so = file.ends_with(".so") || file.contains(".so.");
    let name = crate::registry::name_from_path(path);
    let builtin = crate::registry::builtins()
        .iter()
        .any(|r| r.info.name.eq_ignore_ascii_case(name));
    so && !file.starts_with("ulogd_") && !builtin
}

/// Loads every external plugin the config names; errors name the line.
pub fn load_config_plugins(cfg: &Config) -> Result<(), ConfigError> {
    for p in cfg.plugins.iter().filter(|p| is_external(&p.path)) {
        load(Path::new(&p.path)).map_err(|e| cfg.err(p.line, format!("plugin {}: {e}", p.path)))?;
    }
    Ok(())
}

/// The registration of a loaded plugin named `name` (exact, then ignoring case).
pub fn find(name: &str) -> Option<Registration> {
    let all = loaded();
    all.iter()
        .find(|l| l.info.name == name)
        .or_else(|| all.iter().find(|l| l.info.name.eq_ignore_ascii_case(name)))
        .map(|l| registration(l))
}

/// Names of the loaded plugins of a kind.
pub fn names(kind: Option<PluginKind>) -> Vec<&'static str> {
    loaded()
        .iter()
        .filter(|l| kind.is_none_or(|k| l.info.kind == k))
        .map(|l| l.info.name)
        .collect()
}

/// The loaded plugin a builder is called for.
pub(crate) fn by_info(info: &'static PluginInfo) -> Option<&'static Loaded> {
    loaded().into_iter().find(|l| std::ptr::eq(l.info, info))
}

fn registration(l: &'static Loaded) -> Registration {
    let builder = match l.info.kind {
        PluginKind::Filter => Builder::Filter(instance::build_filter),
        _ => Builder::Output(instance::build_output),
    };
    Registration {
        info: l.info,
        builder,
    }
}

/// Loads `path` (once: loading the same file again returns the first load).
pub fn load(path: &Path) -> Result<&'static PluginInfo, LoadError> {
    if let Some(l) = loaded().iter().find(|l| l.path == path) {
        return Ok(l.info);
    }
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // RTLD_NOW: a library with an unresolved symbol (a ulogd2 plugin wants
    // ulogd's own functions) fails here, cleanly, instead of killing the
    // daemon at its first call. SAFETY: running a library's initialisers is
    // what loading a plugin means; the operator named the file.
    let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| {
        let mut m = e.to_string();
        if m.contains("undefined symbol") {
            m.push_str(
                " (a ulogd2 plugin? rulogd has ulogd2's plugins built in: \
                 name the ulogd_*.so file, or the plugin)",
            );
        }
        LoadError::Open(m)
    })?;
    // SAFETY: the symbol has the signature the header declares.
    let entry: abi::descriptor_fn = unsafe {
        *lib.get::<abi::descriptor_fn>(abi::SYMBOL)
            .map_err(|e| LoadError::NoSymbol(e.to_string()))?
    };
    // The library stays mapped for good: instances, the descriptor and the
    // strings it points to live as long as the process.
    std::mem::forget(lib);
    // SAFETY: the plugin's own function, declared by the header.
    let desc = unsafe { entry() };
    if desc.is_null() {
        return Err(LoadError::NullDescriptor);
    }
    // The version is the first field in every ABI version, so it is read
    // alone before anything else of the layout is trusted.
    // SAFETY: non-null, and every version starts with a u32 version.
    let version = unsafe { *(desc as *const u32) };
    if version != abi::ABI_VERSION {
        return Err(LoadError::Version {
            plugin: version,
            daemon: abi::ABI_VERSION,
        });
    }
    // SAFETY: an ABI 1 descriptor, which lives as long as the library.
    let desc: &'static abi::plugin = unsafe { &*desc };
    let (info, out_types) = describe(desc)?;
    let builtin = crate::registry::builtins()
        .into_iter()
        .any(|r| r.info.name.eq_ignore_ascii_case(info.name));
    if builtin {
        return Err(LoadError::Clash {
            name: info.name.into(),
            with: "is a built-in plugin's; an external plugin needs a name of its own".into(),
        });
    }
    let mut all = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(other) = all
        .iter()
        .find(|l| l.info.name.eq_ignore_ascii_case(info.name))
    {
        return Err(LoadError::Clash {
            name: info.name.into(),
            with: format!("is already taken by {}", other.path.display()),
        });
    }
    let l: &'static Loaded = Box::leak(Box::new(Loaded {
        path: path.to_path_buf(),
        desc,
        info,
        out_types,
    }));
    all.push(l);
    Ok(l.info)
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A C string of the descriptor, copied; `what` names it in errors.
fn text(p: *const c_char, what: &str) -> Result<String, LoadError> {
    if p.is_null() {
        return Err(LoadError::Descriptor(format!("{what} is NULL")));
    }
    // SAFETY: the header requires NUL-terminated strings that outlive the library.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(str::to_owned)
        .map_err(|_| LoadError::Descriptor(format!("{what} is not UTF-8")))
}

/// The key type of an ABI type number.
pub(crate) fn key_type(t: u16) -> Option<KeyType> {
    Some(match t {
        abi::TYPE_NONE => KeyType::None,
        abi::TYPE_INT8 => KeyType::I8,
        abi::TYPE_INT16 => KeyType::I16,
        abi::TYPE_INT32 => KeyType::I32,
        abi::TYPE_INT64 => KeyType::I64,
        abi::TYPE_UINT8 => KeyType::U8,
        abi::TYPE_UINT16 => KeyType::U16,
        abi::TYPE_UINT32 => KeyType::U32,
        abi::TYPE_UINT64 => KeyType::U64,
        abi::TYPE_BOOL => KeyType::Bool,
        abi::TYPE_IPADDR => KeyType::IpAddr,
        abi::TYPE_STRING => KeyType::String,
        abi::TYPE_RAW => KeyType::Raw,
        abi::TYPE_RAWSTR => KeyType::RawStr,
        _ => return None,
    })
}

fn keys(p: *const abi::key, n: u32, table: &str) -> Result<&'static [KeyDef], LoadError> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(LoadError::Descriptor(format!(
            "{table} keys: {n} declared but the table is NULL"
        )));
    }
    // SAFETY: the header: `n` entries at `p`.
    let raw = unsafe { std::slice::from_raw_parts(p, n as usize) };
    let mut out: Vec<KeyDef> = Vec::with_capacity(raw.len());
    for (i, k) in raw.iter().enumerate() {
        let name = text(k.name, &format!("{table} key {i}: name"))?;
        if name.is_empty() {
            return Err(LoadError::Descriptor(format!(
                "{table} key {i}: empty name"
            )));
        }
        let ty = key_type(k.ty).ok_or_else(|| {
            LoadError::Descriptor(format!("{table} key `{name}`: unknown type 0x{:04x}", k.ty))
        })?;
        let known = abi::KEYF_OPTIONAL | abi::KEYF_INACTIVE;
        if k.flags & !known != 0 {
            return Err(LoadError::Descriptor(format!(
                "{table} key `{name}`: unknown flags 0x{:04x}",
                k.flags & !known
            )));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(LoadError::Descriptor(format!(
                "{table} key `{name}` is declared twice"
            )));
        }
        let mut def = KeyDef::dynamic(name, ty);
        if k.flags & abi::KEYF_OPTIONAL != 0 {
            def.flags = def.flags.union(KeyFlags::OPTIONAL);
        }
        if k.flags & abi::KEYF_INACTIVE != 0 {
            def.flags = def.flags.union(KeyFlags::INACTIVE);
        }
        if !k.cim_name.is_null() {
            def.cim = Some(leak(text(k.cim_name, "cim_name")?));
        }
        out.push(def);
    }
    Ok(Box::leak(out.into_boxed_slice()))
}

fn options(d: &abi::plugin) -> Result<&'static [OptionDef], LoadError> {
    if d.n_options == 0 {
        return Ok(&[]);
    }
    if d.options.is_null() {
        return Err(LoadError::Descriptor(
            "options: declared but the table is NULL".into(),
        ));
    }
    // SAFETY: the header: `n_options` entries.
    let raw = unsafe { std::slice::from_raw_parts(d.options, d.n_options as usize) };
    let mut out: Vec<OptionDef> = Vec::with_capacity(raw.len());
    for (i, o) in raw.iter().enumerate() {
        let name = leak(text(o.name, &format!("option {i}: name"))?);
        let default = leak(text(o.default_value, &format!("option `{name}`: default"))?);
        let help = if o.help.is_null() {
            ""
        } else {
            leak(text(o.help, "help")?)
        };
        if out.iter().any(|x| x.name == name) {
            return Err(LoadError::Descriptor(format!(
                "option `{name}` is declared twice"
            )));
        }
        let mut def = match o.ty {
            abi::OPT_INT => {
                if o.min > o.max {
                    return Err(LoadError::Descriptor(format!(
                        "option `{name}`: min {} above max {}",
                        o.min, o.max
                    )));
                }
                let def = OptionDef::int(name, default, help).range(o.min, o.max);
                let v = rulogd_plugin::options::parse_int(default)
                    .map_err(|e| LoadError::Descriptor(format!("option `{name}`: default {e}")))?;
                if o.flags & abi::OPTF_MANDATORY == 0 && !(o.min..=o.max).contains(&v) {
                    return Err(LoadError::Descriptor(format!(
                        "option `{name}`: default {v} outside {}..={}",
                        o.min, o.max
                    )));
                }
                def
            }
            abi::OPT_STRING => OptionDef::str(name, default, help),
            t => {
                return Err(LoadError::Descriptor(format!(
                    "option `{name}`: unknown type {t}"
                )))
            }
        };
        if o.flags & abi::OPTF_MANDATORY != 0 {
            def = def.mandatory();
        }
        out.push(def);
    }
    Ok(Box::leak(out.into_boxed_slice()))
}

fn describe(d: &'static abi::plugin) -> Result<(&'static PluginInfo, Vec<KeyType>), LoadError> {
    if (d.size as usize) < std::mem::size_of::<abi::plugin>() {
        return Err(LoadError::Descriptor(format!(
            "size {} is below the {} bytes of an ABI {} descriptor",
            d.size,
            std::mem::size_of::<abi::plugin>(),
            abi::ABI_VERSION
        )));
    }
    let name = text(d.name, "name")?;
    let name_ok = !name.is_empty()
        && name.len() <= 30
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !name_ok {
        return Err(LoadError::Descriptor(format!(
            "name `{name}`: 1 to 30 letters, digits or _"
        )));
    }
    let summary = if d.summary.is_null() {
        String::new()
    } else {
        text(d.summary, "summary")?
    };
    let kind = match d.kind {
        abi::KIND_FILTER => PluginKind::Filter,
        abi::KIND_OUTPUT => PluginKind::Output,
        abi::KIND_INPUT => {
            return Err(LoadError::Descriptor(format!(
                "`{name}` is an input; ABI {} loads filters and outputs only",
                abi::ABI_VERSION
            )))
        }
        k => return Err(LoadError::Descriptor(format!("`{name}`: unknown kind {k}"))),
    };
    if d.flags != 0 {
        return Err(LoadError::Descriptor(format!(
            "`{name}`: unknown flags 0x{:x}",
            d.flags
        )));
    }
    let missing = |what: &str| LoadError::Descriptor(format!("`{name}`: no {what} callback"));
    if d.configure.is_none() {
        return Err(missing("configure"));
    }
    match kind {
        PluginKind::Filter if d.process.is_none() => return Err(missing("process")),
        PluginKind::Output if d.format.is_none() => return Err(missing("format")),
        PluginKind::Output if d.writer_open.is_none() => return Err(missing("writer_open")),
        PluginKind::Output if d.writer_write.is_none() => return Err(missing("writer_write")),
        _ => {}
    }
    let input_keys = keys(d.input_keys, d.n_input_keys, "input")?;
    let output_keys = match kind {
        PluginKind::Filter => keys(d.output_keys, d.n_output_keys, "output")?,
        _ => &[],
    };
    let out_types = output_keys.iter().map(|k| k.ty).collect();
    let info = Box::leak(Box::new(PluginInfo {
        name: leak(name),
        kind,
        summary: leak(summary),
        options: options(d)?,
        input_keys,
        output_keys,
        wildcard_input: false,
    }));
    Ok((info, out_types))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulogd_files_and_names_are_not_loaded() {
        assert!(!is_external(
            "/usr/lib/x86_64-linux-gnu/ulogd/ulogd_output_JSON.so"
        ));
        assert!(!is_external("ulogd_raw2packet_BASE.so"));
        assert!(!is_external("JSON"));
        assert!(!is_external("/opt/ulogd2/lib/output_JSON.so"));
        assert!(is_external("/opt/site/libcsv.so"));
        assert!(is_external("./librulogd_portdrop.so.1"));
    }

    #[test]
    fn a_missing_file_is_an_open_error() {
        let e = load(Path::new("/nonexistent/libnothing.so")).unwrap_err();
        assert!(matches!(e, LoadError::Open(_)), "{e}");
    }
}
