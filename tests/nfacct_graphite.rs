//! NFACCT and GRAPHITE against the kernel, ulogd2 and a real carbon-cache.
//!
//! - nfacct objects made with `nfacct add` and counted by an iptables
//!   `-m nfacct` rule: ulogd2 and rulogd, side by side, report the same
//!   packets and bytes in the same JSON records and the same Graphite lines;
//!   with `zerocounter=1` the deltas add up to what was sent; SIGUSR2 polls.
//! - GRAPHITE into Debian's carbon-cache (temp storage dir, inside the
//!   namespace): rulogd starts while carbon is down, carbon is stopped and
//!   started again mid-run, and every datapoint rulogd produced (its JSON
//!   twin stack lists them) is read back from the whisper files.
//!
//! Needs root, iptables with the nfacct match, and for the carbon test
//! graphite-carbon and python3-whisper (scripts/test-all.sh installs them).
//! Run: `cargo build --release -p rulogd && RULOGD_KERNEL_TESTS=1 cargo test
//! -p rulogd-tests --test nfacct_graphite`.

use rulogd_tests::daemon::oracle_mode;
use rulogd_tests::{self as lab, Carbon, Daemon, Netns, Record, TempDir};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::time::Duration;

/// 20 (IPv4) + 8 (UDP) + the payload.
const PAYLOAD: usize = 100;
const PKT_BYTES: u64 = 20 + 8 + PAYLOAD as u64;

fn send(ns: &Netns, n: usize) {
    ns.run_in_thread(|| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..n {
            s.send_to(&[1u8; PAYLOAD], "127.0.0.1:9999").unwrap();
        }
    });
}

fn records(path: &Path) -> Vec<Record> {
    lab::json::read_records_lenient(path).0
}

/// The last record for `name`.
fn last<'a>(recs: &'a [Record], name: &str) -> Option<&'a Record> {
    recs.iter().rev().find(|r| r.str("sum.name") == Some(name))
}

/// A TCP listener inside `ns` collecting everything peers send.
fn collector(ns: &Netns) -> (u16, std::sync::mpsc::Receiver<String>) {
    let l: TcpListener = ns.run_in_thread(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0
                        || tx
                            .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

const TWIN_CONF: &str = concat!(
    lab::conf_global!("acct1:NFACCT,json1:JSON", "acct1:NFACCT,gr1:GRAPHITE"),
    "\n\
[acct1]
pollinterval={POLL}
zerocounter={ZERO}
timestamp=1

[json1]
file=\"{FILE}\"
sync=1

[gr1]
host=\"127.0.0.1\"
port=\"{PORT}\"
prefix=\"{PREFIX}\"
"
);

fn twin_conf(poll: u32, zero: u8, file: &Path, port: u16, prefix: &str) -> String {
    lab::fill(
        TWIN_CONF,
        &[
            ("POLL", poll.to_string()),
            ("ZERO", zero.to_string()),
            ("FILE", lab::path_str(file)),
            ("PORT", port.to_string()),
            ("PREFIX", prefix.to_string()),
        ],
    )
}

/// Graphite lines by metric: the last (value, timestamp) seen.
fn graphite_last(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 3, "bad Graphite line {l:?}");
        m.insert(
            f[0].to_string(),
            (f[1].parse().unwrap(), f[2].parse().unwrap()),
        );
    }
    m
}

/// Totals (`zerocounter=0`): both daemons poll the same objects; their
/// JSON records and Graphite lines must say the same.
#[test]
fn nfacct_and_graphite_like_ulogd2() {
    lab::skip_unless_root!();
    let ns = Netns::with_nfacct("acct-diff", &["rl_a", "rl_b"]);
    let dir = TempDir::new("acct-diff");
    let (uport, urx) = collector(&ns);
    let (rport, rrx) = collector(&ns);
    let files = [
        dir.path().join("ulogd.json"),
        dir.path().join("rulogd.json"),
    ];
    let u = Daemon::ulogd(
        &ns,
        dir.path(),
        &twin_conf(1, 0, &files[0], uport, "netfilter.nfacct"),
        &[],
        &[&files[0]],
    );
    let r = Daemon::rulogd(
        &ns,
        dir.path(),
        &twin_conf(1, 0, &files[1], rport, "netfilter.nfacct"),
        &[],
        &[&files[1]],
    );
    send(&ns, 5);
    let done = |f: &Path| {
        last(&records(f), "rl_a").is_some_and(|x| x.u64("sum.pkts") == Some(5))
            && last(&records(f), "rl_b").is_some()
    };
    assert!(
        lab::wait_until(Duration::from_secs(10), || files.iter().all(|f| done(f))),
        "both daemons should report rl_a = 5 packets\n{}\n{}",
        u.log_text(),
        r.log_text()
    );
    // One more poll each, so Graphite lines for the final values are out.
    std::thread::sleep(Duration::from_millis(1500));
    u.stop();
    r.stop();
    let (ur, rr) = (records(&files[0]), records(&files[1]));
    for name in ["rl_a", "rl_b"] {
        let (a, b) = (last(&ur, name).unwrap(), last(&rr, name).unwrap());
        let d = lab::json::compare_records(a, b, &[], ("ulogd2", "rulogd"));
        assert!(
            d.is_empty(),
            "{name}: {}\n{}\n{}",
            d.join("\n"),
            a.line,
            b.line
        );
    }
    let a = last(&rr, "rl_a").unwrap();
    assert_eq!(
        (a.u64("sum.pkts"), a.u64("sum.bytes")),
        (Some(5), Some(5 * PKT_BYTES))
    );
    let (ug, rg): (String, String) = (urx.try_iter().collect(), rrx.try_iter().collect());
    let (ug, rg) = (graphite_last(&ug), graphite_last(&rg));
    assert_eq!(
        ug.keys().collect::<Vec<_>>(),
        rg.keys().collect::<Vec<_>>(),
        "{ug:?} {rg:?}"
    );
    for (k, (uv, uts)) in &ug {
        let (rv, rts) = rg[k];
        assert_eq!(*uv, rv, "{k}");
        assert!(uts.abs_diff(rts) <= 2, "{k}: timestamps {uts} {rts}");
    }
    assert_eq!(rg["netfilter.nfacct.rl_a.bytes"].0, 5 * PKT_BYTES);
}

/// `zerocounter=1`: each record is the count since the previous poll, and
/// the deltas add up to what was sent. SIGUSR2 polls at once.
#[test]
fn zerocounter_deltas_and_sigusr2() {
    lab::skip_unless_root!();
    if oracle_mode() {
        // ulogd 2.0.8 segfaults on SIGUSR2 when an NFACCT id is in two
        // stacks (docs/COMPATIBILITY.md).
        eprintln!("skipped in oracle mode");
        return;
    }
    let ns = Netns::with_nfacct("acct-zero", &["rl_a", "rl_b"]);
    let dir = TempDir::new("acct-zero");
    let f = dir.path().join("out.json");
    let (port, _rx) = collector(&ns);
    // A long interval: polls come from SIGUSR2 only.
    let d = Daemon::rulogd(
        &ns,
        dir.path(),
        &twin_conf(3600, 1, &f, port, "x"),
        &[],
        &[&f],
    );
    // SIGUSR2 before the handlers are in would end the daemon.
    d.wait_signals();
    let count = |name: &str| {
        records(&f)
            .iter()
            .filter(|x| x.str("sum.name") == Some(name))
            .count()
    };
    for (i, burst) in [3usize, 4, 0].iter().enumerate() {
        send(&ns, *burst);
        d.signal(libc::SIGUSR2);
        assert!(
            lab::wait_until(Duration::from_secs(3), || count("rl_a") > i),
            "SIGUSR2 should poll at once\n{}",
            d.log_text()
        );
    }
    d.stop();
    let recs = records(&f);
    let a: Vec<&Record> = recs
        .iter()
        .filter(|x| x.str("sum.name") == Some("rl_a"))
        .collect();
    let pkts: Vec<u64> = a.iter().map(|x| x.req_u64("sum.pkts")).collect();
    assert_eq!(pkts, [3, 4, 0], "deltas since the previous poll");
    assert_eq!(
        a.iter().map(|x| x.req_u64("sum.bytes")).sum::<u64>(),
        7 * PKT_BYTES
    );
    assert!(a
        .iter()
        .all(|x| x.has("oob.time.sec") && x.has("oob.time.usec")));
}

/// rulogd's datapoints (from the JSON twin stack) as metric → ts → value.
fn expected(recs: &[Record], prefix: &str) -> BTreeMap<String, BTreeMap<u64, f64>> {
    let mut m: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    for r in recs {
        let (name, ts) = (r.req_str("sum.name"), r.req_u64("oob.time.sec"));
        for (what, key) in [("pkts", "sum.pkts"), ("bytes", "sum.bytes")] {
            m.entry(format!("{prefix}.{name}.{what}"))
                .or_default()
                .insert(ts, r.req_u64(key) as f64);
        }
    }
    m
}

/// GRAPHITE into a real carbon-cache that is down at start and restarted
/// mid-run: every datapoint arrives, with the values NFACCT read.
#[test]
fn graphite_into_carbon_survives_restarts() {
    lab::skip_unless_root!();
    if oracle_mode() {
        eprintln!("skipped in oracle mode: ulogd2's GRAPHITE cannot start while carbon is down");
        return;
    }
    if !Carbon::ready() {
        return;
    }
    let ns = Netns::with_nfacct("graphite", &["rl_a", "rl_b"]);
    let dir = TempDir::new("graphite");
    let mut carbon = Carbon::new(dir.path());
    let f = dir.path().join("out.json");
    // Polls on SIGUSR2 only, so the test decides when datapoints exist.
    let d = Daemon::rulogd(
        &ns,
        dir.path(),
        &twin_conf(3600, 0, &f, 2003, "rl.acct"),
        &[],
        &[&f],
    );
    // SIGUSR2 before the handlers are in would end the daemon.
    d.wait_signals();
    let mut polls = 0;
    let mut poll = |pkts: usize| {
        send(&ns, pkts);
        d.signal(libc::SIGUSR2);
        polls += 1;
        let n = polls * 2;
        assert!(
            lab::wait_until(Duration::from_secs(3), || lab::count_lines(&f) >= n),
            "poll {polls}: no records\n{}",
            d.log_text()
        );
        // Whisper keeps one point per second.
        std::thread::sleep(Duration::from_millis(1100));
    };
    let all_there = |carbon: &Carbon| {
        let want = expected(&records(&f), "rl.acct");
        want.iter().all(|(metric, pts)| {
            let got = carbon.fetch(metric);
            pts.iter().all(|(t, v)| got.get(t) == Some(v))
        })
    };
    // Carbon is down: datapoints wait in rulogd.
    poll(2);
    poll(3);
    carbon.start(&ns);
    assert!(
        lab::wait_until(Duration::from_secs(20), || all_there(&carbon)),
        "datapoints from before carbon started did not arrive\n{}\n{}",
        carbon.log(),
        d.log_text()
    );
    poll(1);
    assert!(lab::wait_until(Duration::from_secs(20), || all_there(
        &carbon
    )));
    // Carbon goes away mid-run, and comes back.
    carbon.stop();
    poll(4);
    poll(5);
    carbon.start(&ns);
    poll(6);
    let ok = lab::wait_until(Duration::from_secs(30), || all_there(&carbon));
    let log = d.log_text();
    d.stop();
    let recs = records(&f);
    let want = expected(&recs, "rl.acct");
    for (metric, pts) in &want {
        let got = carbon.fetch(metric);
        for (t, v) in pts {
            assert_eq!(
                got.get(t),
                Some(v),
                "{metric} at {t}: whisper {got:?}\n{log}"
            );
        }
    }
    assert!(ok);
    // 6 polls x 2 objects, totals (zerocounter=0): 2+3+1+4+5+6 = 21 packets.
    assert_eq!(recs.len(), 12);
    let a = last(&recs, "rl_a").unwrap();
    assert_eq!(a.u64("sum.pkts"), Some(21));
    assert_eq!(
        want["rl.acct.rl_a.bytes"].values().last(),
        Some(&((21 * PKT_BYTES) as f64))
    );
}
