//! `rulogd --info PLUGIN`: what `ulogd --info` prints, for our plugins.

use rulogd_plugin::{KeyDef, OptType, OptionDef, PluginInfo, PluginKind};
use std::fmt::Write as _;

fn keys(out: &mut String, title: &str, keys: &[KeyDef]) {
    let _ = writeln!(out, "{title}:");
    for k in keys {
        let mut flags = String::new();
        if k.is_optional() {
            flags.push_str(", optional");
        }
        if let Some(c) = k.cim {
            let _ = write!(flags, ", JSON name {c}");
        }
        let _ = writeln!(out, "\tKey: {} ({}{flags})", k.name, k.ty.info_label());
    }
}

/// What values an option takes, as ` [values …]` (empty when unrestricted).
fn accepts(o: &OptionDef) -> String {
    let mut v = Vec::new();
    if o.flag {
        v.push("0 or 1".to_string());
    } else if let Some((lo, hi)) = o.range {
        let zero = if o.or_zero { " or 0" } else { "" };
        v.push(format!("{lo}..={hi}{zero}"));
    }
    if !o.one_of.is_empty() {
        v.push(o.one_of.join("|"));
    }
    if o.unique {
        v.push("one per instance".into());
    }
    if v.is_empty() {
        String::new()
    } else {
        format!(" [values: {}]", v.join("; "))
    }
}

/// The description of one plugin.
pub fn describe(info: &PluginInfo) -> String {
    let mut out = String::new();
    let kind = match info.kind {
        PluginKind::Input => "input",
        PluginKind::Filter => "filter",
        PluginKind::Output => "output",
    };
    let _ = writeln!(out, "Name: {}", info.name);
    let _ = writeln!(out, "Kind: {kind} — {}", info.summary);
    if info.options.is_empty() {
        let _ = writeln!(out, "Config options: none");
    } else {
        let _ = writeln!(out, "Config options:");
        for o in info.options {
            let ty = match o.ty {
                OptType::Int => "Integer",
                OptType::Str => "String",
            };
            let m = if o.mandatory { ", mandatory" } else { "" };
            // The Var line stays exactly ulogd's; what is accepted goes
            // with the help text.
            let _ = writeln!(out, "\tVar: {} ({ty}, Default: {}{m})", o.name, o.default);
            let _ = writeln!(out, "\t\t{}{}", o.help, accepts(o));
        }
    }
    if info.wildcard_input {
        let _ = writeln!(
            out,
            "Input keys:\n\tevery key of every plugin before it in the stack"
        );
    } else if info.kind != PluginKind::Input {
        keys(&mut out, "Input keys", info.input_keys);
    }
    if info.kind != PluginKind::Output {
        keys(&mut out, "Output keys", info.output_keys);
    }
    out
}
