//! External plugins on real NFLOG traffic: the C output example (built
//! here with gcc) and the Rust filter example (built with cargo) loaded from
//! `plugin=` lines in a network namespace and checked record by record
//! against the built-in JSON output of the same stack; a Rust plugin that
//! panics (contained); SIGHUP through a plugin's writer; a plugin refusing
//! its config. tests/plugins_load.rs has the checks that need no traffic.
//!
//! Run: `cargo build -p rulogd && cargo test -p rulogd-tests --test plugins`
//! (root; gcc).

use rulogd_tests::plugins::{csv_plugin, rust_plugins, s};
use rulogd_tests::traffic::{tcp_session, udp_send};
use rulogd_tests::{self as lab, daemon, Daemon, Record};
use std::net::SocketAddr;
use std::time::Duration;

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
    let (ns, dir) = lab::netns_or_skip!("plugins");
    ns.nft(&lab::counted_ruleset(&format!(
        "  udp dport {{ 9999, 5353 }} counter name \"c\" log prefix \"ext,plug\" group {GROUP}\n\
         \x20 tcp dport 5555 counter name \"c\" log prefix \"ext tcp\" group {GROUP}\n\
         \x20 tcp sport 5555 counter name \"c\" log prefix \"ext tcp\" group {GROUP}"
    )))
    .unwrap();
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
    let mut d = Daemon::rulogd(&ns, dir.path(), &conf, &[GROUP], &[&kept, &all, &rows]);
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
    let (ns, dir) = lab::netns_or_skip!("plugpanic");
    let group = GROUP + 1;
    ns.nft(&lab::counted_ruleset(&format!(
        "  udp dport {{ 9999, 5353 }} counter name \"c\" log prefix \"p\" group {group}"
    )))
    .unwrap();
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
    let mut d = Daemon::rulogd(&ns, dir.path(), &conf, &[group], &[&boom, &all]);
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
fn sighup_reopens_the_c_outputs_file_on_its_writer_thread() {
    let (ns, dir) = lab::netns_or_skip!("plughup");
    let group = GROUP + 2;
    ns.nft(&lab::counted_ruleset(&format!(
        "  udp dport 9999 counter name \"c\" log prefix \"h\" group {group}"
    )))
    .unwrap();
    let csv = csv_plugin(dir.path());
    let (rows, old) = (dir.path().join("rows.csv"), dir.path().join("rows.csv.1"));
    let conf = format!(
        "[global]\nlogfile=\"{{LOGFILE}}\"\nloglevel=3\nplugin=\"{}\"\n\
         stack=log1:NFLOG,base1:BASE,csv1:CSV\n[log1]\ngroup={group}\n[csv1]\nfile=\"{}\"\n",
        s(&csv),
        s(&rows)
    );
    let mut d = Daemon::rulogd(&ns, dir.path(), &conf, &[group], &[&rows]);
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
    let (ns, dir) = lab::netns_or_skip!("plugcfg");
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
