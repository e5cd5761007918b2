//! External plugins: the C output example (built here with gcc) and the
//! Rust filter example (built with cargo) loaded from `plugin=` lines, run
//! on real NFLOG traffic in a network namespace and checked record by
//! record against the built-in JSON output of the same stack; and the
//! refusals: another ABI version, no descriptor symbol, a bad key table, a
//! built-in's name, and a Rust plugin that panics (contained).
//!
//! Run: `cargo build -p rulogd && cargo test -p rulogd-tests --test plugins`
//! (root for the kernel tests; gcc).

use rulogd_tests::traffic::{tcp_session, udp_send};
use rulogd_tests::{self as lab, daemon, Daemon, Kind, Netns, Record, TempDir};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Compiles C source `src` into `dir/lib<name>.so` against include/.
fn gcc(dir: &Path, name: &str, src: &Path) -> PathBuf {
    let out = dir.join(format!("lib{name}.so"));
    let st = Command::new("gcc")
        .args([
            "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-I",
        ])
        .arg(root().join("include"))
        .arg("-o")
        .arg(&out)
        .arg(src)
        .output()
        .expect("run gcc (package gcc)");
    assert!(
        st.status.success(),
        "gcc {}: {}",
        src.display(),
        String::from_utf8_lossy(&st.stderr)
    );
    out
}

/// Writes `text` to `dir/<name>.c` and compiles it.
fn gcc_text(dir: &Path, name: &str, text: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, text).unwrap();
    gcc(dir, name, &src)
}

/// The CSV example, compiled into `dir`.
fn csv_plugin(dir: &Path) -> PathBuf {
    gcc(dir, "csv", &root().join("examples/plugins/csv_output.c"))
}

/// The Rust cdylibs (PORTDROP, PANICKY, LINES), built once with cargo.
fn rust_plugins() -> &'static (PathBuf, PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let st = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "rulogd-example-portdrop",
                "-p",
                "rulogd-test-panicky",
                "-p",
                "rulogd-test-lines",
            ])
            .current_dir(root())
            .status()
            .expect("run cargo");
        assert!(st.success(), "cargo build of the plugin examples failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target"));
        let d = target.join("debug");
        (
            d.join("librulogd_portdrop.so"),
            d.join("librulogd_panicky.so"),
            d.join("librulogd_lines.so"),
        )
    })
}

fn s(p: &Path) -> String {
    lab::path_str(p)
}

/// `rulogd -c conf -t`: (success, stdout + stderr).
fn check(dir: &Path, name: &str, conf: &str) -> (bool, String) {
    let path = dir.join(name);
    std::fs::write(&path, conf).unwrap();
    let out = Command::new(lab::rulogd_bin())
        .arg("-c")
        .arg(&path)
        .arg("-t")
        .output()
        .expect("run rulogd");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn ruleset(rules: &str) -> String {
    format!(
        "table inet t {{\n counter c {{}}\n chain in {{\n  type filter hook input priority 0; policy accept;\n{rules}\n }}\n}}\n"
    )
}

/// One CSV line of the example, split into its seven fields.
fn csv_fields(line: &str) -> Vec<String> {
    let rest = line.strip_prefix('"').expect("quoted prefix");
    let end = rest.find("\",").expect("end of prefix");
    let mut v = vec![rest[..end].replace("\"\"", "\"")];
    v.extend(rest[end + 2..].split(',').map(str::to_string));
    assert_eq!(v.len(), 7, "{line}");
    v
}

fn field(r: &Record, key: &str) -> String {
    match r.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

const GROUP: u16 = 31;

#[test]
fn c_output_and_rust_filter_match_json_record_by_record() {
    if !lab::require_root() {
        return;
    }
    let ns = Netns::new("plugins").unwrap();
    ns.nft(&ruleset(&format!(
        "  udp dport {{ 9999, 5353 }} counter name \"c\" log prefix \"ext,plug\" group {GROUP}\n\
         \x20 tcp dport 5555 counter name \"c\" log prefix \"ext tcp\" group {GROUP}\n\
         \x20 tcp sport 5555 counter name \"c\" log prefix \"ext tcp\" group {GROUP}"
    )))
    .unwrap();
    let dir = TempDir::new("plugins");
    let csv = csv_plugin(dir.path());
    let (portdrop, _, _) = rust_plugins();
    let (kept, all, rows) = (
        dir.path().join("kept.json"),
        dir.path().join("all.json"),
        dir.path().join("kept.csv"),
    );
    let conf = format!(
        "[global]\nlogfile=\"{{LOGFILE}}\"\nloglevel=3\n\
         plugin=\"/usr/lib/x86_64-linux-gnu/ulogd/ulogd_output_JSON.so\"\n\
         plugin=\"{}\"\nplugin=\"{}\"\n\
         stack=log1:NFLOG,base1:BASE,drop1:PORTDROP,ip2str1:IP2STR,json1:JSON\n\
         stack=log1:NFLOG,base1:BASE,drop1:PORTDROP,csv1:CSV\n\
         stack=log1:NFLOG,base1:BASE,ip2str2:IP2STR,json2:JSON\n\
         [log1]\ngroup={GROUP}\n[drop1]\nports=\"5353\"\n\
         [json1]\nfile=\"{}\"\nsync=1\n[json2]\nfile=\"{}\"\nsync=1\n[csv1]\nfile=\"{}\"\n",
        s(portdrop),
        s(&csv),
        s(&kept),
        s(&all),
        s(&rows)
    );
    let mut d = Daemon::start(
        &ns,
        Kind::Rulogd,
        dir.path(),
        "rulogd",
        &conf,
        &[GROUP],
        &[&kept, &all, &rows],
    );
    ns.run_in_thread(|| {
        for dst in [
            "127.0.0.1:9999",
            "127.0.0.1:5353",
            "[::1]:9999",
            "[::1]:5353",
        ] {
            udp_send(dst.parse().unwrap(), 3, 40).unwrap();
        }
        let addr: SocketAddr = "127.0.0.1:5555".parse().unwrap();
        tcp_session(addr, 2000, 100).unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    let logged = ns.counter("inet", "t", "c").unwrap() as usize;
    d.wait_lines(&all, logged, Duration::from_secs(10));
    assert!(
        daemon::wait_drained(&ns, GROUP, Duration::from_secs(5)),
        "group not drained"
    );
    d.stop();
    let all = lab::read_records(&all);
    assert_eq!(all.len(), logged, "{}", daemon::drops_note(&ns, GROUP));
    let kept = lab::read_records(&kept);
    // PORTDROP dropped exactly the records to or from 5353: what is left
    // is the full stream without them, line for line.
    let want: Vec<&str> = all
        .iter()
        .filter(|r| r.u64("dest_port") != Some(5353) && r.u64("src_port") != Some(5353))
        .map(|r| r.line.as_str())
        .collect();
    assert_eq!(want.len(), logged - 6, "six datagrams to 5353");
    let got: Vec<&str> = kept.iter().map(|r| r.line.as_str()).collect();
    assert_eq!(got, want);
    // The C output wrote the same records, in the same order.
    let text = std::fs::read_to_string(&rows).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), kept.len(), "CSV lines vs JSON records");
    let (mut v4, mut v6, mut tcp) = (0, 0, 0);
    for (line, r) in lines.iter().zip(&kept) {
        let f = csv_fields(line);
        let want = [
            field(r, "oob.prefix"),
            field(r, "src_ip"),
            field(r, "dest_ip"),
            field(r, "ip.protocol"),
            field(r, "src_port"),
            field(r, "dest_port"),
            field(r, "ip.totlen"),
        ];
        assert_eq!(f, want, "CSV {line}\nJSON {}", r.line);
        match (f[1].as_str(), f[3].as_str()) {
            ("::1", _) => v6 += 1,
            (_, "6") => tcp += 1,
            _ => v4 += 1,
        }
    }
    assert_eq!((v4, v6), (3, 3), "UDP records kept per family");
    assert!(tcp >= 6, "the TCP session: {tcp} records");
    assert_eq!(
        csv_fields(lines[0])[0],
        "ext,plug",
        "a comma in the quoted prefix"
    );
}

#[test]
fn panicking_rust_filter_is_counted_and_the_other_stacks_go_on() {
    if !lab::require_root() {
        return;
    }
    let ns = Netns::new("plugpanic").unwrap();
    let group = GROUP + 1;
    ns.nft(&ruleset(&format!(
        "  udp dport {{ 9999, 5353 }} counter name \"c\" log prefix \"p\" group {group}"
    )))
    .unwrap();
    let dir = TempDir::new("plugpanic");
    let (_, panicky, lines) = rust_plugins();
    let (boom, all, rows) = (
        dir.path().join("boom.json"),
        dir.path().join("all.json"),
        dir.path().join("lines.txt"),
    );
    // LINES, the SDK's output side, rides along on the full stream.
    let conf = format!(
        "[global]\nlogfile=\"{{LOGFILE}}\"\nloglevel=3\nplugin=\"{}\"\nplugin=\"{}\"\n\
         stack=log1:NFLOG,base1:BASE,boom1:PANICKY,json1:JSON\n\
         stack=log1:NFLOG,base1:BASE,json2:JSON\n\
         stack=log1:NFLOG,base1:BASE,lines1:LINES\n\
         [log1]\ngroup={group}\n[boom1]\nport=5353\n\
         [json1]\nfile=\"{}\"\nsync=1\n[json2]\nfile=\"{}\"\nsync=1\n\
         [lines1]\nfile=\"{}\"\n",
        s(panicky),
        s(lines),
        s(&boom),
        s(&all),
        s(&rows)
    );
    let mut d = Daemon::start(
        &ns,
        Kind::Rulogd,
        dir.path(),
        "rulogd",
        &conf,
        &[group],
        &[&boom, &all],
    );
    ns.run_in_thread(|| {
        udp_send("127.0.0.1:5353".parse().unwrap(), 3, 20).unwrap();
        udp_send("127.0.0.1:9999".parse().unwrap(), 4, 20).unwrap();
    });
    d.wait_lines(&all, 7, Duration::from_secs(10));
    d.wait_lines(&boom, 4, Duration::from_secs(10));
    assert!(d.running(), "the daemon died\n{}", d.log_text());
    assert!(daemon::wait_drained(&ns, group, Duration::from_secs(5)));
    let log_path = dir.path().join("rulogd.log");
    d.stop();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let boom = lab::read_records(&boom);
    assert_eq!(boom.len(), 4);
    assert!(boom.iter().all(|r| r.u64("dest_port") == Some(9999)));
    let all = lab::read_records(&all);
    assert_eq!(all.len(), 7);
    let want: Vec<String> = all
        .iter()
        .map(|r| format!("{} {}", field(r, "oob.prefix"), field(r, "dest_port")))
        .collect();
    let text = std::fs::read_to_string(&rows).unwrap();
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got, want, "the Rust output's lines against JSON");
    assert!(
        log.contains("panic in process: record to port 5353 (as asked)"),
        "{log}"
    );
    assert!(log.contains("boom1 (PANICKY)"), "{log}");
    assert!(log.contains("boom1 (PANICKY plugin): failed=3"), "{log}");
}

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
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let got: Vec<usize> = text.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(got.len(), items.len());
    for ((what, _, rust), c) in items.iter().zip(got) {
        assert_eq!(*rust, c, "{what}: Rust {rust}, gcc {c}");
    }
}

#[test]
fn sighup_reopens_the_c_outputs_file_on_its_writer_thread() {
    if !lab::require_root() {
        return;
    }
    let ns = Netns::new("plughup").unwrap();
    let group = GROUP + 2;
    ns.nft(&ruleset(&format!(
        "  udp dport 9999 counter name \"c\" log prefix \"h\" group {group}"
    )))
    .unwrap();
    let dir = TempDir::new("plughup");
    let csv = csv_plugin(dir.path());
    let (rows, old) = (dir.path().join("rows.csv"), dir.path().join("rows.csv.1"));
    let conf = format!(
        "[global]\nlogfile=\"{{LOGFILE}}\"\nloglevel=3\nplugin=\"{}\"\n\
         stack=log1:NFLOG,base1:BASE,csv1:CSV\n[log1]\ngroup={group}\n[csv1]\nfile=\"{}\"\n",
        s(&csv),
        s(&rows)
    );
    let mut d = Daemon::start(
        &ns,
        Kind::Rulogd,
        dir.path(),
        "rulogd",
        &conf,
        &[group],
        &[&rows],
    );
    d.wait_signals();
    let send = |n| {
        ns.run_in_thread(|| udp_send("127.0.0.1:9999".parse().unwrap(), n, 10).unwrap());
    };
    send(3);
    d.wait_lines(&rows, 3, Duration::from_secs(10));
    std::fs::rename(&rows, &old).unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        lab::wait_until(Duration::from_secs(10), || rows.exists()),
        "no new file after SIGHUP\n{}",
        d.log_text()
    );
    send(2);
    d.wait_lines(&rows, 2, Duration::from_secs(10));
    d.stop();
    assert_eq!(lab::count_lines(&old), 3);
    assert_eq!(lab::count_lines(&rows), 2);
    for l in std::fs::read_to_string(&rows).unwrap().lines() {
        assert_eq!(csv_fields(l)[5], "9999", "{l}");
    }
}

#[test]
fn a_plugin_that_refuses_its_config_stops_the_start_with_its_reason() {
    if !lab::require_root() {
        return;
    }
    let ns = Netns::new("plugcfg").unwrap();
    let dir = TempDir::new("plugcfg");
    let csv = csv_plugin(dir.path());
    let (portdrop, _, _) = rust_plugins();
    let run = |name: &str, conf: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, conf).unwrap();
        let out = ns
            .command(lab::rulogd_bin())
            .arg("-c")
            .arg(&path)
            .env("STATE_DIRECTORY", dir.path().join("state"))
            .output()
            .expect("run rulogd");
        assert_eq!(out.status.code(), Some(1), "{name} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The C writer cannot open its file: writer_open's message.
    let err = run(
        "csv.conf",
        format!(
            "[global]\nplugin=\"{}\"\nstack=log1:NFLOG,csv1:CSV\n[log1]\ngroup=40\n\
             [csv1]\nfile=\"/nonexistent/dir/x.csv\"\n",
            s(&csv)
        ),
    );
    assert!(
        err.contains("csv1 (CSV): writer_open failed: cannot open /nonexistent/dir/x.csv"),
        "{err}"
    );
    // The Rust filter refuses an option value: configure's message.
    let err = run(
        "drop.conf",
        format!(
            "[global]\nplugin=\"{}\"\nstack=log1:NFLOG,base1:BASE,drop1:PORTDROP,json1:JSON\n\
             [log1]\ngroup=41\n[drop1]\nports=\"53,dns\"\n[json1]\nfile=\"/dev/null\"\n",
            s(portdrop)
        ),
    );
    assert!(
        err.contains("drop1 (PORTDROP): configure failed: ports: `dns` is not a port number"),
        "{err}"
    );
}
