//! Plugin options: declarations (for `--info` and validation) and the typed
//! values an instance was configured with.

use std::collections::HashMap;

/// The type of an option's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptType {
    /// An integer (ulogd accepts decimal, `0x` hex and leading-0 octal).
    Int,
    /// A string.
    Str,
}

/// One option a plugin accepts.
#[derive(Clone, Copy, Debug)]
pub struct OptionDef {
    /// Name as written in the config section.
    pub name: &'static str,
    /// Value type.
    pub ty: OptType,
    /// Default, as text (parsed like a config value).
    pub default: &'static str,
    /// Whether the option must be given.
    pub mandatory: bool,
    /// One line for `--info` and the man page.
    pub help: &'static str,
}

impl OptionDef {
    /// An integer option with a default.
    pub const fn int(name: &'static str, default: &'static str, help: &'static str) -> Self {
        OptionDef {
            name,
            ty: OptType::Int,
            default,
            mandatory: false,
            help,
        }
    }

    /// A string option with a default.
    pub const fn str(name: &'static str, default: &'static str, help: &'static str) -> Self {
        OptionDef {
            name,
            ty: OptType::Str,
            default,
            mandatory: false,
            help,
        }
    }

    /// The same option marked mandatory.
    pub const fn mandatory(mut self) -> Self {
        self.mandatory = true;
        self
    }
}

/// A configured option value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptValue {
    /// Integer.
    Int(i64),
    /// String.
    Str(String),
}

/// Parses an integer the way ulogd's config does (base prefix `0x`, leading `0`
/// octal), but strictly: trailing garbage or overflow is an error, as in ulogd
/// 2.0.9.
pub fn parse_int(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (radix, digits) = if let Some(h) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (16, h)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() {
        return Err(format!("`{s}` is not an integer"));
    }
    let v =
        i64::from_str_radix(digits, radix).map_err(|e| format!("`{s}` is not an integer ({e})"))?;
    Ok(if neg { -v } else { v })
}

/// The validated options of one plugin instance, defaults filled in.
#[derive(Clone, Debug, Default)]
pub struct Options {
    values: HashMap<&'static str, OptValue>,
    explicit: HashMap<&'static str, u32>,
}

impl Options {
    /// Options holding every default of `defs`.
    pub fn defaults(defs: &'static [OptionDef]) -> Result<Self, String> {
        let mut o = Options::default();
        for d in defs {
            let v = match d.ty {
                OptType::Int => OptValue::Int(
                    parse_int(d.default).map_err(|e| format!("default of {}: {e}", d.name))?,
                ),
                OptType::Str => OptValue::Str(d.default.to_string()),
            };
            o.values.insert(d.name, v);
        }
        Ok(o)
    }

    /// Sets an option from config text; `line` is remembered for messages.
    pub fn set(&mut self, def: &'static OptionDef, text: &str, line: u32) -> Result<(), String> {
        let v = match def.ty {
            OptType::Int => OptValue::Int(parse_int(text)?),
            OptType::Str => OptValue::Str(text.to_string()),
        };
        self.values.insert(def.name, v);
        self.explicit.insert(def.name, line);
        Ok(())
    }

    /// Sets an integer option directly (TOML integers).
    pub fn set_int(&mut self, def: &'static OptionDef, v: i64, line: u32) {
        self.values.insert(def.name, OptValue::Int(v));
        self.explicit.insert(def.name, line);
    }

    /// The integer value of an option (0 if undeclared).
    pub fn int(&self, name: &str) -> i64 {
        match self.values.get(name) {
            Some(OptValue::Int(i)) => *i,
            Some(OptValue::Str(s)) => parse_int(s).unwrap_or(0),
            None => 0,
        }
    }

    /// The string value of an option ("" if undeclared).
    pub fn str(&self, name: &str) -> &str {
        match self.values.get(name) {
            Some(OptValue::Str(s)) => s,
            _ => "",
        }
    }

    /// Whether the option was written in the config (rather than defaulted).
    pub fn is_set(&self, name: &str) -> bool {
        self.explicit.contains_key(name)
    }

    /// The config line the option was set on, if any.
    pub fn line_of(&self, name: &str) -> Option<u32> {
        self.explicit.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_follow_ulogd_bases_strictly() {
        assert_eq!(parse_int("10"), Ok(10));
        assert_eq!(parse_int("0x10"), Ok(16));
        assert_eq!(parse_int("0600"), Ok(384));
        assert_eq!(parse_int("0"), Ok(0));
        assert_eq!(parse_int("-1"), Ok(-1));
        assert!(parse_int("12abc").is_err());
        assert!(parse_int("").is_err());
        assert!(parse_int("08").is_err());
    }
}
