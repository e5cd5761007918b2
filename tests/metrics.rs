//! The Prometheus endpoint under load: NFLOG → BASE → IFINDEX → IP2STR →
//! JSON with `metrics_address` set, scraped while packets flow; after the
//! traffic every counter the exit summary prints equals the last scrape, and
//! `promtool check metrics` (Debian's prometheus package) finds no problem.
//!
//! The metric names are a contract (man/rulogd.conf.5, METRICS), so this
//! test spells out the ones with their own names.

use rulogd_tests::traffic::udp_send;
use rulogd_tests::{self as lab, daemon, Daemon, Netns};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

type Samples = HashMap<(String, BTreeMap<String, String>), f64>;

/// GET /metrics inside `ns`; the body.
fn scrape(ns: &Netns, addr: SocketAddr) -> String {
    ns.run_in_thread(move || {
        let mut c = TcpStream::connect(addr).expect("connect to the metrics endpoint");
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut r = String::new();
        c.read_to_string(&mut r).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        body.to_string()
    })
}

/// The samples of a text-format document.
fn parse(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').expect("label=value");
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        out.insert((name.to_string(), labels), value.parse().expect("a number"));
    }
    out
}

/// The series a counter `label` of the set called `set` is exported as.
fn series_of(set: &str, label: &str) -> (String, BTreeMap<String, String>) {
    let (head, plugin) = set
        .strip_suffix(')')
        .and_then(|s| s.rsplit_once(" ("))
        .map(|(h, p)| (h, p.split(' ').next().unwrap()))
        .expect("sets are named `instance (PLUGIN)`");
    let mut labels = BTreeMap::new();
    let prefix = match head.split_once('/') {
        Some((stack, inst)) => {
            labels.insert("stack".to_string(), stack.to_string());
            labels.insert("instance".to_string(), inst.to_string());
            "rulogd_stack_"
        }
        None => {
            labels.insert("instance".to_string(), head.to_string());
            "rulogd_"
        }
    };
    labels.insert("plugin".to_string(), plugin.to_string());
    let mut reason = |r: &str| {
        labels.insert("reason".to_string(), r.to_string());
        "dropped_records_total".to_string()
    };
    let name = match label {
        "dropped_full" => reason("queue_full"),
        "dropped_shutdown" => reason("shutdown"),
        "dropped_by_filter" => reason("filter"),
        "rcvbuf" => "receive_buffer_bytes".into(),
        "queue_depth" => "queue_depth_batches".into(),
        "pending" => "pending_records".into(),
        "spool_bytes" => "spool_bytes".into(),
        "spooled" => "spooled_records_total".into(),
        l => format!("{l}_total"),
    };
    (format!("{prefix}{name}"), labels)
}

#[test]
fn every_counter_scraped_under_load_equals_the_exit_summary() {
    let (ns, dir) = lab::netns_or_skip!("metrics");
    let group = 31;
    ns.nft(&lab::counted_ruleset(&format!(
        "  udp dport 9999 counter name \"c\" log group {group}"
    )))
    .unwrap();
    let json = dir.path().join("out.json");
    let port = 9560;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let conf = lab::json_conf(group, &json).replacen(
        "[global]\n",
        &format!("[global]\nmetrics_address=\"{addr}\"\n"),
        1,
    );
    let mut d = Daemon::rulogd(&ns, dir.path(), &conf, &[group], &[&json]);

    // Scrape continuously while the packets flow: counters never go back.
    let done = AtomicBool::new(false);
    let scraper = {
        let ns = &ns;
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let mut last: Samples = Samples::new();
                let mut scrapes = 0;
                while !done.load(Ordering::Relaxed) || scrapes == 0 {
                    let now = parse(&scrape(ns, addr));
                    for (k, v) in &now {
                        if k.0.ends_with("_total") {
                            if let Some(old) = last.get(k) {
                                assert!(v >= old, "{k:?} went from {old} to {v}");
                            }
                        }
                    }
                    last = now;
                    scrapes += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                scrapes
            });
            let dst: SocketAddr = "127.0.0.1:9999".parse().unwrap();
            for _ in 0..10 {
                ns.run_in_thread(|| udp_send(dst, 2_000, 64).unwrap());
            }
            done.store(true, Ordering::Relaxed);
            h.join().unwrap()
        })
    };
    assert!(scraper >= 2, "only {scraper} scrapes under load");

    std::thread::sleep(Duration::from_millis(200));
    let logged = ns.counter("inet", "t", "c").unwrap() as usize;
    assert_eq!(logged, 20_000);
    d.wait_lines(&json, logged, Duration::from_secs(20));
    assert!(daemon::wait_drained(&ns, group, Duration::from_secs(5)));
    // The JSON writer counts after it wrote: give it a moment to settle.
    std::thread::sleep(Duration::from_millis(300));
    let text = scrape(&ns, addr);
    let last = parse(&text);

    let check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("promtool (Debian's prometheus package) runs");
    assert!(
        check.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    d.stop();
    let log = std::fs::read_to_string(dir.path().join("rulogd.log")).unwrap();
    let mut compared = 0;
    for line in log.lines() {
        let Some(rest) = line.split_once("exit: ").map(|(_, r)| r) else {
            continue;
        };
        let (set, counters) = rest
            .split_once(": ")
            .unwrap_or((rest.trim_end_matches(':'), ""));
        for kv in counters.split(' ').filter(|s| !s.is_empty()) {
            let (label, value) = kv.split_once('=').unwrap();
            // The stop itself (after the last scrape) unbinds NFLOG's group:
            // its acknowledgement adds to the input's bytes and stop_*.
            if set.ends_with("(NFLOG)") && (label == "bytes" || label.starts_with("stop_")) {
                continue;
            }
            let key = series_of(set, label);
            let got = last
                .get(&key)
                .unwrap_or_else(|| panic!("{set} {label}: no series {key:?} in\n{text}"));
            assert_eq!(
                *got,
                value.parse::<f64>().unwrap(),
                "{set} {label} ({key:?})"
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 10,
        "only {compared} counters in the exit summary:\n{log}"
    );
    let received = &series_of("log1 (NFLOG)", "received");
    assert_eq!(last[received], 20_000.0);
}
