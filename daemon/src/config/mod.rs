//! Configuration: the model shared by the ulogd.conf and TOML front ends.

mod toml_file;
mod ulogd_file;

use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub use toml_file::parse_toml;
pub use ulogd_file::parse_ulogd;

/// A configuration error, located in a file.
#[derive(Debug, Error)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, 0 when the whole file is concerned.
    pub line: u32,
    /// What is wrong, worded for the operator.
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.msg)
        } else {
            write!(f, "{}: {}", self.file.display(), self.msg)
        }
    }
}

/// A value as written in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawValue {
    /// Text (ulogd files hold only text; TOML strings).
    Text(String),
    /// A TOML integer.
    Int(i64),
    /// A TOML boolean (only a 0/1 switch takes one).
    Bool(bool),
}

impl fmt::Display for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawValue::Text(s) => f.write_str(s),
            RawValue::Int(i) => write!(f, "{i}"),
            RawValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One `key=value` line of a section.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Option name.
    pub key: String,
    /// Value.
    pub value: RawValue,
    /// Line it was written on.
    pub line: u32,
}

/// A `[name]` section: the options of one plugin instance.
#[derive(Clone, Debug)]
pub struct Section {
    /// Section (instance) name.
    pub name: String,
    /// Line of the header.
    pub line: u32,
    /// Entries in file order.
    pub entries: Vec<Entry>,
}

/// One element of a stack line: `id:PLUGIN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackElem {
    /// Instance id (names the section).
    pub id: String,
    /// Plugin name.
    pub plugin: String,
}

/// A `stack=` line.
#[derive(Clone, Debug)]
pub struct StackLine {
    /// Line number.
    pub line: u32,
    /// The text as written.
    pub text: String,
    /// Its elements, input first.
    pub elems: Vec<StackElem>,
}

/// A `plugin=` line.
#[derive(Clone, Debug)]
pub struct PluginLine {
    /// The path as written.
    pub path: String,
    /// Line number.
    pub line: u32,
}

/// A whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it came from.
    pub path: PathBuf,
    /// `[global] logfile`.
    pub logfile: Option<(String, u32)>,
    /// `[global] loglevel`.
    pub loglevel: Option<(i64, u32)>,
    /// `[global] metrics_address`: where the Prometheus endpoint listens.
    pub metrics: Option<(std::net::SocketAddr, u32)>,
    /// `[global] plugin` lines.
    pub plugins: Vec<PluginLine>,
    /// `[global] stack` lines.
    pub stacks: Vec<StackLine>,
    /// Every other section.
    pub sections: Vec<Section>,
}

impl Config {
    /// A config read from `path` with nothing in it yet.
    fn empty(path: &std::path::Path) -> Config {
        Config {
            path: path.to_path_buf(),
            logfile: None,
            loglevel: None,
            metrics: None,
            plugins: Vec::new(),
            stacks: Vec::new(),
            sections: Vec::new(),
        }
    }

    /// Adds a `stack` line, parsed; the error is the parser's message.
    fn add_stack(&mut self, text: String, line: u32) -> Result<(), String> {
        let elems = parse_stack(&text)?;
        self.stacks.push(StackLine { line, text, elems });
        Ok(())
    }

    /// The section named `name`, if any.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Whether values are typed (TOML), so a quoted number is not an integer.
    pub fn is_toml(&self) -> bool {
        self.path.extension().is_some_and(|e| e == "toml")
    }

    /// An error at `line` of this file.
    pub fn err(&self, line: u32, msg: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line,
            msg: msg.into(),
        }
    }
}

/// Reads a config file, choosing the syntax by extension (`.toml` or ulogd).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        msg: format!("cannot read config file: {e}"),
    })?;
    let text = String::from_utf8_lossy(&text);
    parse_text(path, &text)
}

/// Parses config text, choosing the syntax by the path's extension.
pub fn parse_text(path: &Path, text: &str) -> Result<Config, ConfigError> {
    if path.extension().is_some_and(|e| e == "toml") {
        parse_toml(path, text)
    } else {
        parse_ulogd(path, text)
    }
}

/// Splits a stack line into `id:PLUGIN` elements.
pub(crate) fn parse_stack(text: &str) -> Result<Vec<StackElem>, String> {
    let mut elems = Vec::new();
    for tok in text.split([',', '\n']) {
        let tok = tok.trim();
        if tok.is_empty() {
            return Err(format!("empty element in stack `{text}`"));
        }
        let Some((id, plugin)) = tok.split_once(':') else {
            return Err(format!(
                "stack element `{tok}` is not of the form id:PLUGIN (e.g. log1:NFLOG)"
            ));
        };
        let (id, plugin) = (id.trim(), plugin.trim());
        if id.is_empty() || plugin.is_empty() {
            return Err(format!(
                "stack element `{tok}` has an empty id or plugin name"
            ));
        }
        if id.len() > 30 {
            return Err(format!("instance id `{id}` is longer than 30 characters"));
        }
        elems.push(StackElem {
            id: id.to_string(),
            plugin: plugin.to_string(),
        });
    }
    if elems.len() < 2 {
        return Err(format!(
            "stack `{text}` needs at least an input and an output"
        ));
    }
    Ok(elems)
}

/// Reads a `metrics_address` value: a numeric address and port.
pub(crate) fn parse_metrics_address(v: &str) -> Result<std::net::SocketAddr, String> {
    v.parse().map_err(|_| {
        format!("metrics_address `{v}`: expected an address and port such as 127.0.0.1:9560 or [::1]:9560")
    })
}
