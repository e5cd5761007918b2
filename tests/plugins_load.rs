//! Loading external plugins without traffic: another ABI version, no
//! descriptor symbol, a bad key table and a built-in's name refused at the
//! `plugin=` line; TOML, `-t` and `--info` on loaded plugins; gcc's layout
//! of include/rulogd_plugin.h against the Rust mirror.
//!
//! Run: `cargo build -p rulogd && cargo test -p rulogd-tests --test plugins_load` (gcc).

use rulogd_tests::plugins::{check, csv_plugin, gcc_text, root, rust_plugins, s};
use rulogd_tests::{self as lab, TempDir};
use std::process::Command;

#[test]
fn plugins_are_checked_at_their_plugin_line() {
    let dir = TempDir::new("plugbad");
    let d = dir.path();
    let descriptor = |abi: &str, name: &str, keys: &str| {
        format!(
            "#include \"rulogd_plugin.h\"\n#include <stddef.h>\n\
             static void *conf(const struct rulogd_host *h, const struct rulogd_config *c, char *e, size_t l)\n\
             {{ (void)h; (void)c; (void)e; (void)l; return NULL; }}\n\
             static int proc(void *i, struct rulogd_record *r) {{ (void)i; (void)r; return 0; }}\n\
             static const struct rulogd_key keys[] = {{ {keys} }};\n\
             static const struct rulogd_plugin d = {{ .abi_version = {abi}, .size = sizeof(d),\n\
             .kind = RULOGD_KIND_FILTER, .name = \"{name}\", .input_keys = keys,\n\
             .n_input_keys = sizeof(keys) / sizeof(keys[0]), .configure = conf, .process = proc }};\n\
             const struct rulogd_plugin *rulogd_plugin_descriptor(void) {{ return &d; }}\n"
        )
    };
    let ok_key = "{\"udp.dport\", RULOGD_TYPE_UINT16, 0, 0, NULL}";
    let cases = [
        (
            gcc_text(d, "abi2", &descriptor("2", "ABI2", ok_key)),
            "plugin ABI version 2, but this rulogd speaks plugin ABI version 1",
        ),
        (
            gcc_text(d, "nosym", "int not_a_plugin(void) { return 0; }\n"),
            "no `rulogd_plugin_descriptor` symbol",
        ),
        (
            gcc_text(
                d,
                "badtype",
                &descriptor("1", "BADTYPE", "{\"udp.dport\", 0x7777, 0, 0, NULL}"),
            ),
            "input key `udp.dport`: unknown type 0x7777",
        ),
        (
            gcc_text(
                d,
                "dupkey",
                &descriptor("1", "DUPKEY", &format!("{ok_key}, {ok_key}")),
            ),
            "input key `udp.dport` is declared twice",
        ),
        (
            gcc_text(d, "clash", &descriptor("1", "BASE", ok_key)),
            "plugin name `BASE` is a built-in plugin's",
        ),
    ];
    for (so, want) in &cases {
        let conf = format!(
            "[global]\n# a comment\nplugin=\"{}\"\nstack=log1:NFLOG,json1:JSON\n[json1]\nfile=\"/dev/null\"\n",
            s(so)
        );
        let (ok, text) = check(d, "bad.conf", &conf);
        assert!(!ok, "{} was accepted:\n{text}", so.display());
        let at = format!("bad.conf:3: plugin {}: ", s(so));
        assert!(text.contains(&at), "no file:line and path in:\n{text}");
        assert!(text.contains(want), "want `{want}` in:\n{text}");
    }
}

#[test]
fn loaded_plugins_work_in_toml_with_info_and_check() {
    let dir = TempDir::new("plugtoml");
    let csv = csv_plugin(dir.path());
    let (portdrop, _, _) = rust_plugins();
    let conf = format!(
        "[global]\nplugin = [\"{}\", \"{}\"]\n\
         stack = [\"log1:NFLOG,base1:BASE,drop1:PORTDROP,csv1:CSV\"]\n\
         [log1]\ngroup = 7\n[drop1]\nports = \"53\"\n[csv1]\nfile = \"/dev/null\"\n",
        s(portdrop),
        s(&csv)
    );
    let (ok, text) = check(dir.path(), "p.toml", &conf);
    assert!(ok, "{text}");
    assert!(
        text.contains("  drop1 (PORTDROP):\n    tcp.sport <- base1.tcp.sport"),
        "{text}"
    );
    assert!(text.contains("    ip.saddr <- base1.ip.saddr"), "{text}");
    // An option the plugin does not declare is refused like a built-in's.
    let bad = conf.replace("ports = \"53\"", "ports = \"53\"\nport = 1");
    let (ok, text) = check(dir.path(), "bad.toml", &bad);
    assert!(!ok && text.contains("port"), "{text}");
    // --info on the file, and by name through the config's plugin= lines.
    let out = Command::new(lab::rulogd_bin())
        .arg("--info")
        .arg(&csv)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{info}");
    assert!(info.starts_with("Name: CSV\nKind: output"), "{info}");
    assert!(
        info.contains("\tKey: ip.saddr (IP addr, optional)"),
        "{info}"
    );
    let out = Command::new(lab::rulogd_bin())
        .arg("-c")
        .arg(dir.path().join("p.toml"))
        .args(["--info", "PORTDROP"])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(info.contains("Var: ports (String"), "{info}");
}

/// (what, C expression, Rust value): gcc and the Rust mirror must agree.
fn layout_items() -> Vec<(&'static str, String, usize)> {
    use rulogd_plugin_abi as abi;
    use std::mem::{offset_of, size_of};
    macro_rules! item {
        ($c:literal, $v:expr) => {
            ($c, $c.to_string(), $v)
        };
    }
    vec![
        item!("sizeof(struct rulogd_key)", size_of::<abi::key>()),
        item!(
            "offsetof(struct rulogd_key, type)",
            offset_of!(abi::key, ty)
        ),
        item!(
            "offsetof(struct rulogd_key, flags)",
            offset_of!(abi::key, flags)
        ),
        item!(
            "offsetof(struct rulogd_key, cim_name)",
            offset_of!(abi::key, cim_name)
        ),
        item!("sizeof(struct rulogd_option)", size_of::<abi::option>()),
        item!(
            "offsetof(struct rulogd_option, default_value)",
            offset_of!(abi::option, default_value)
        ),
        item!(
            "offsetof(struct rulogd_option, max)",
            offset_of!(abi::option, max)
        ),
        item!("sizeof(struct rulogd_optval)", size_of::<abi::optval>()),
        item!(
            "offsetof(struct rulogd_optval, len)",
            offset_of!(abi::optval, len)
        ),
        item!("sizeof(struct rulogd_config)", size_of::<abi::config>()),
        item!(
            "offsetof(struct rulogd_config, options)",
            offset_of!(abi::config, options)
        ),
        item!("sizeof(struct rulogd_value)", size_of::<abi::value>()),
        item!(
            "offsetof(struct rulogd_value, len)",
            offset_of!(abi::value, len)
        ),
        item!(
            "offsetof(struct rulogd_value, v)",
            offset_of!(abi::value, v)
        ),
        item!("sizeof(struct rulogd_host)", size_of::<abi::host>()),
        item!(
            "offsetof(struct rulogd_host, set)",
            offset_of!(abi::host, set)
        ),
        item!(
            "offsetof(struct rulogd_host, log)",
            offset_of!(abi::host, log)
        ),
        item!("sizeof(struct rulogd_plugin)", size_of::<abi::plugin>()),
        item!(
            "offsetof(struct rulogd_plugin, name)",
            offset_of!(abi::plugin, name)
        ),
        item!(
            "offsetof(struct rulogd_plugin, n_output_keys)",
            offset_of!(abi::plugin, n_output_keys)
        ),
        item!(
            "offsetof(struct rulogd_plugin, options)",
            offset_of!(abi::plugin, options)
        ),
        item!(
            "offsetof(struct rulogd_plugin, configure)",
            offset_of!(abi::plugin, configure)
        ),
        item!(
            "offsetof(struct rulogd_plugin, process)",
            offset_of!(abi::plugin, process)
        ),
        item!(
            "offsetof(struct rulogd_plugin, writer_open)",
            offset_of!(abi::plugin, writer_open)
        ),
        item!(
            "offsetof(struct rulogd_plugin, writer_close)",
            offset_of!(abi::plugin, writer_close)
        ),
        item!("RULOGD_PLUGIN_ABI_VERSION", abi::ABI_VERSION as usize),
        item!("RULOGD_TYPE_IPADDR", abi::TYPE_IPADDR as usize),
        item!("RULOGD_TYPE_RAWSTR", abi::TYPE_RAWSTR as usize),
        item!("RULOGD_KEYF_INACTIVE", abi::KEYF_INACTIVE as usize),
        item!("RULOGD_KIND_OUTPUT", abi::KIND_OUTPUT as usize),
    ]
}

#[test]
fn the_header_and_the_rust_mirror_have_one_layout() {
    let dir = TempDir::new("pluglayout");
    let items = layout_items();
    let mut src = String::from("#include \"rulogd_plugin.h\"\n#include <stddef.h>\n#include <stdio.h>\nint main(void)\n{\n");
    for (_, c, _) in &items {
        src.push_str(&format!("\tprintf(\"%zu\\n\", (size_t)({c}));\n"));
    }
    src.push_str("\treturn 0;\n}\n");
    let c = dir.path().join("layout.c");
    std::fs::write(&c, src).unwrap();
    let exe = dir.path().join("layout");
    let out = Command::new("gcc")
        .args(["-Wall", "-Werror", "-I"])
        .arg(root().join("include"))
        .arg("-o")
        .arg(&exe)
        .arg(&c)
        .output();
    lab::check_output("gcc", out);
    let out = Command::new(&exe).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let got: Vec<usize> = text.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(got.len(), items.len());
    for ((what, _, rust), c) in items.iter().zip(got) {
        assert_eq!(*rust, c, "{what}: Rust {rust}, gcc {c}");
    }
}

#[test]
fn ulogd2_plugin_files_map_to_built_ins_and_are_never_run() {
    let dir = TempDir::new("plugulogd");
    let debian = std::path::Path::new("/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_MARK.so");
    // Debian's own files, as ulogd.conf names them: nothing is dlopened.
    let conf = format!(
        "[global]\nplugin=\"{}\"\nplugin=\"/usr/lib/x86_64-linux-gnu/ulogd/ulogd_output_JSON.so\"\n\
         stack=log1:NFLOG,mark1:MARK,json1:JSON\n[json1]\nfile=\"/dev/null\"\n",
        s(debian)
    );
    let (ok, text) = check(dir.path(), "u.conf", &conf);
    assert!(ok, "{text}");
    if !debian.exists() {
        eprintln!("skipped the renamed-file half: ulogd2 is not installed");
        return;
    }
    // The same file renamed is loaded as an external plugin: it needs
    // ulogd2's symbols, so loading fails cleanly, with a hint.
    let renamed = dir.path().join("libmarker.so");
    std::fs::copy(debian, &renamed).unwrap();
    let conf = conf.replace(&s(debian), &s(&renamed));
    let (ok, text) = check(dir.path(), "r.conf", &conf);
    assert!(!ok, "{text}");
    assert!(text.contains("r.conf:2: plugin "), "{text}");
    assert!(
        text.contains("undefined symbol") && text.contains("a ulogd2 plugin?"),
        "{text}"
    );
}
