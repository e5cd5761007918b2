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

/// A check no declarative constraint expresses: the value and every option
/// of the instance (defaults filled in), so it may compare two options.
pub type CheckFn = fn(&OptValue, &Options) -> Result<(), String>;

/// One option a plugin accepts, with the values it takes. The config layer
/// checks every constraint (with the option's own file:line) before any
/// instance is built, so `rulogd -t` refuses exactly what a start would.
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
    /// Inclusive bounds of an integer option.
    pub range: Option<(i64, i64)>,
    /// Whether 0 ("off" or "the default") is accepted outside `range`.
    pub or_zero: bool,
    /// A 0/1 switch (TOML may write it `true`/`false`).
    pub flag: bool,
    /// The words a string option takes (compared ignoring ASCII case).
    pub one_of: &'static [&'static str],
    /// No two instances of the plugin may have the same value.
    pub unique: bool,
    /// A further check.
    pub check: Option<CheckFn>,
}

impl OptionDef {
    const fn new(
        name: &'static str,
        ty: OptType,
        default: &'static str,
        help: &'static str,
    ) -> Self {
        OptionDef {
            name,
            ty,
            default,
            mandatory: false,
            help,
            range: None,
            or_zero: false,
            flag: false,
            one_of: &[],
            unique: false,
            check: None,
        }
    }

    /// An integer option with a default.
    pub const fn int(name: &'static str, default: &'static str, help: &'static str) -> Self {
        Self::new(name, OptType::Int, default, help)
    }

    /// A string option with a default.
    pub const fn str(name: &'static str, default: &'static str, help: &'static str) -> Self {
        Self::new(name, OptType::Str, default, help)
    }

    /// The same option marked mandatory.
    pub const fn mandatory(mut self) -> Self {
        self.mandatory = true;
        self
    }

    /// Accepts only `lo..=hi`.
    pub const fn range(mut self, lo: i64, hi: i64) -> Self {
        self.range = Some((lo, hi));
        self
    }

    /// Also accepts 0 outside the range (0 meaning off or the default).
    pub const fn or_zero(mut self) -> Self {
        self.or_zero = true;
        self
    }

    /// A 0/1 switch.
    pub const fn flag(mut self) -> Self {
        self.flag = true;
        self.range = Some((0, 1));
        self
    }

    /// Accepts only these words (ignoring ASCII case).
    pub const fn one_of(mut self, words: &'static [&'static str]) -> Self {
        self.one_of = words;
        self
    }

    /// No two instances of the plugin may share a value (a group, a path).
    pub const fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// Adds a check of its own.
    pub const fn check(mut self, f: CheckFn) -> Self {
        self.check = Some(f);
        self
    }

    /// Whether the option declares what integers it takes.
    pub fn is_bounded(&self) -> bool {
        self.range.is_some()
    }

    /// Checks one value against every constraint; the message says what
    /// is accepted.
    pub fn validate(&self, v: &OptValue, all: &Options) -> Result<(), String> {
        match v {
            OptValue::Int(i) => {
                if let Some((lo, hi)) = self.range {
                    let ok = (lo..=hi).contains(i) || (self.or_zero && *i == 0);
                    if !ok && self.flag {
                        return Err(format!("{i} is not 0 or 1"));
                    }
                    if !ok {
                        let zero = if self.or_zero { " (or 0)" } else { "" };
                        return Err(format!("{i} is out of range {lo}..={hi}{zero}"));
                    }
                }
            }
            OptValue::Str(s) => {
                if !self.one_of.is_empty() && !self.one_of.iter().any(|w| w.eq_ignore_ascii_case(s))
                {
                    return Err(format!("`{s}` is not one of: {}", self.one_of.join(", ")));
                }
            }
        }
        match self.check {
            Some(f) => f(v, all),
            None => Ok(()),
        }
    }
}

/// A `port` option: a number in 1..=65535 or a service name; never wrapped.
pub fn check_port(v: &OptValue, _: &Options) -> Result<(), String> {
    let text = v.to_string();
    if text.is_empty() {
        return Err("is empty: give a port number or a service name".into());
    }
    if text
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'-' || b == b'+')
    {
        let n = parse_int(&text)?;
        if !(1..=65535).contains(&n) {
            return Err(format!("port {n} is out of range 1..=65535"));
        }
    }
    Ok(())
}

/// A string option that must not be empty.
pub fn check_not_empty(v: &OptValue, _: &Options) -> Result<(), String> {
    match v {
        OptValue::Str(s) if s.is_empty() => Err("must not be empty".into()),
        _ => Ok(()),
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

impl std::fmt::Display for OptValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptValue::Int(i) => write!(f, "{i}"),
            OptValue::Str(s) => f.write_str(s),
        }
    }
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
    /// Integer option `name`, refused unless within `lo..=hi`: the range
    /// check of settings whose bounds come from elsewhere than the option
    /// table (a kernel limit, another option).
    pub fn int_in(&self, name: &str, lo: i64, hi: i64) -> Result<i64, crate::BuildError> {
        let v = self.int(name);
        if v < lo || v > hi {
            return Err(crate::BuildError::option(
                name,
                format!("{v} is out of range {lo}..={hi}"),
            ));
        }
        Ok(v)
    }

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

    /// The value of an option, if declared.
    pub fn get(&self, name: &str) -> Option<&OptValue> {
        self.values.get(name)
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

    static DEFS: [OptionDef; 5] = [
        OptionDef::int("n", "5", "").range(1, 10),
        OptionDef::int("z", "0", "").range(4096, 8192).or_zero(),
        OptionDef::int("f", "0", "").flag(),
        OptionDef::str("w", "drop", "").one_of(&["drop", "block"]),
        OptionDef::str("p", "80", "").check(check_port),
    ];

    fn check(i: usize, v: OptValue) -> Result<(), String> {
        let all = Options::defaults(&DEFS).unwrap();
        DEFS[i].validate(&v, &all)
    }

    #[test]
    fn constraints_accept_their_bounds_and_refuse_beyond() {
        use OptValue::{Int, Str};
        assert!(check(0, Int(1)).is_ok() && check(0, Int(10)).is_ok());
        assert_eq!(check(0, Int(0)).unwrap_err(), "0 is out of range 1..=10");
        assert!(check(0, Int(11)).is_err());
        assert!(check(1, Int(0)).is_ok() && check(1, Int(4096)).is_ok());
        assert!(check(1, Int(10)).unwrap_err().contains("(or 0)"));
        assert!(check(2, Int(1)).is_ok());
        assert_eq!(check(2, Int(2)).unwrap_err(), "2 is not 0 or 1");
        assert!(check(3, Str("BLOCK".into())).is_ok());
        assert_eq!(
            check(3, Str("maybe".into())).unwrap_err(),
            "`maybe` is not one of: drop, block"
        );
        assert!(check(4, Str("65535".into())).is_ok());
        assert!(check(4, Str("carbon".into())).is_ok());
        assert!(check(4, Str("70000".into()))
            .unwrap_err()
            .contains("1..=65535"));
        assert!(check(4, Str("0".into())).is_err());
        assert!(check(4, Int(-1)).is_err());
        assert!(check(4, Str(String::new())).is_err());
    }
}
