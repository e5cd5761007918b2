//! GRAPHITE across a carbon restart, counted exactly: NFACCT deltas
//! (`zerocounter=1`) of traffic the kernel counts, into a real carbon-cache
//! that goes away for 10 s twice mid-run and is started again on the same
//! whisper files: once stopped with SIGTERM, once hung (SIGSTOP) and then
//! killed. The values summed from the whisper files must equal the kernel's
//! own counters for the rule: the lines carbon's kernel took just before it
//! went down are lost unless the resend window sends them again.
//!
//! Two GRAPHITE instances run side by side, one with the default durable
//! spool and one with `spool_dir=""`, so the window is checked with both
//! writers.
//!
//! Needs root, iptables with the nfacct match, graphite-carbon and
//! python3-whisper. Run: `cargo build -p rulogd && cargo test -p
//! rulogd-tests --test graphite_restart`.

use rulogd_tests::daemon::oracle_mode;
use rulogd_tests::{self as lab, Carbon, Daemon, Netns, TempDir};
use std::net::UdpSocket;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PAYLOAD: usize = 100;
/// 20 (IPv4) + 8 (UDP) + the payload.
const PKT_BYTES: u64 = 20 + 8 + PAYLOAD as u64;

/// Polls come from SIGUSR2 only, so the test decides when they happen: one
/// right after carbon gets SIGTERM (its lines are what a restart loses),
/// and never two in one second (carbon's resolution), so every delta is its
/// own datapoint.
const CONF: &str = concat!(
    lab::conf_global!(
        "acct1:NFACCT,json1:JSON",
        "acct1:NFACCT,gr1:GRAPHITE",
        "acct1:NFACCT,gr2:GRAPHITE"
    ),
    "\n\
[acct1]
pollinterval=3600
zerocounter=1
timestamp=1

[json1]
file=\"{FILE}\"
sync=1

[gr1]
host=\"127.0.0.1\"
port=\"2003\"
prefix=\"rl.spool\"

[gr2]
host=\"127.0.0.1\"
port=\"2003\"
prefix=\"rl.mem\"
spool_dir=\"\"
"
);

fn run(ns: &Netns, args: &[&str]) -> String {
    let out = ns.command(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The kernel's packets and bytes for the rule that feeds `rl_a`.
fn rule_counters(ns: &Netns) -> (u64, u64) {
    let out = run(ns, &["iptables", "-w", "-nvxL", "INPUT"]);
    let line = out
        .lines()
        .find(|l| l.contains("rl_a"))
        .unwrap_or_else(|| panic!("no nfacct rule in\n{out}"));
    let mut f = line.split_whitespace();
    let mut num = || f.next().unwrap().parse::<u64>().unwrap();
    (num(), num())
}

/// Ends the traffic thread when dropped, on success or panic.
struct EndOnDrop<'a>(&'a AtomicBool);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the whisper file of `metric` holds, summed.
fn whisper_sum(carbon: &Carbon, metric: &str) -> u64 {
    carbon.fetch(metric).values().map(|v| *v as u64).sum()
}

/// The last rl_a record's packet count and how many rl_a records there are.
fn polls(f: &Path) -> (usize, Option<u64>) {
    let recs = lab::json::read_records_lenient(f).0;
    let a: Vec<_> = recs
        .iter()
        .filter(|r| r.str("sum.name") == Some("rl_a"))
        .collect();
    (a.len(), a.last().and_then(|r| r.u64("sum.pkts")))
}

#[test]
fn graphite_loses_nothing_across_a_carbon_restart() {
    lab::skip_unless_root!();
    if oracle_mode() {
        eprintln!("skipped in oracle mode: ulogd2's GRAPHITE loses the lines by design");
        return;
    }
    if !Carbon::ready() {
        return;
    }
    let ns = Netns::with_nfacct("gr-restart", &["rl_a"]);
    let dir = TempDir::new("gr-restart");
    let mut carbon = Carbon::new(dir.path());
    carbon.start(&ns);
    let f = dir.path().join("out.json");
    let conf = lab::fill(CONF, &[("FILE", lab::path_str(&f))]);
    let d = Daemon::rulogd(&ns, dir.path(), &conf, &[], &[&f]);
    d.wait_signals();
    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let mut away = [Duration::ZERO; 2];
    let mut n = 0;
    // One poll, then a pause so that the next is at least 1.5 s later.
    let mut poll = || {
        let t = Instant::now();
        d.signal(libc::SIGUSR2);
        n += 1;
        assert!(
            lab::wait_until(Duration::from_secs(3), || polls(&f).0 >= n),
            "poll {n}: no record\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(1500).saturating_sub(t.elapsed()));
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.run_in_thread(|| {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                // About 500 packets/s, steady, so every poll has a delta.
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..5 {
                        sock.send_to(&[1u8; PAYLOAD], "127.0.0.1:9999").unwrap();
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        });
        // A failed assertion below must end the traffic, or the scope
        // would wait for it for ever.
        let _end = EndOnDrop(&stop);
        for _ in 0..3 {
            poll();
        }
        // A clean stop: carbon closes its connections a few ms after
        // SIGTERM, so the poll sent now may be taken by its kernel and never
        // read.
        let t = Instant::now();
        carbon.terminate();
        while t.elapsed() < Duration::from_secs(10) {
            poll();
        }
        carbon.stop();
        away[0] = t.elapsed();
        carbon.start(&ns);
        for _ in 0..3 {
            poll();
        }
        // A hang, then a kill: what carbon's kernel ACKed meanwhile is lost
        // with its receive buffer, every time.
        let t = Instant::now();
        carbon.freeze();
        poll();
        poll();
        carbon.kill();
        while t.elapsed() < Duration::from_secs(10) {
            poll();
        }
        away[1] = t.elapsed();
        carbon.start(&ns);
        for _ in 0..3 {
            poll();
        }
        stop.store(true, Ordering::Relaxed);
    });
    // The poll with the last packets, then one with none.
    poll();
    poll();
    assert_eq!(polls(&f).1, Some(0), "no traffic after the last poll");
    let stamps: Vec<u64> = lab::json::read_records_lenient(&f)
        .0
        .iter()
        .map(|r| r.req_u64("oob.time.sec"))
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "two polls in one second would share a whisper slot: {stamps:?}"
    );
    let (pkts, bytes) = rule_counters(&ns);
    let sent = sent.load(Ordering::Relaxed);
    assert_eq!(
        (pkts, bytes),
        (sent, sent * PKT_BYTES),
        "the rule counts what was sent"
    );
    let want = |prefix: &str| {
        [
            (whisper_sum(&carbon, &format!("{prefix}.rl_a.pkts")), pkts),
            (whisper_sum(&carbon, &format!("{prefix}.rl_a.bytes")), bytes),
        ]
    };
    let all_stored = || {
        ["rl.spool", "rl.mem"]
            .iter()
            .all(|p| want(p).iter().all(|(got, want)| got == want))
    };
    let ok = lab::wait_until(Duration::from_secs(20), all_stored);
    let log = d.log_text();
    d.stop();
    let summary = std::fs::read_to_string(dir.path().join("rulogd.log")).unwrap_or_default();
    let recs = lab::json::read_records_lenient(&f).0;
    for (prefix, id) in [("rl.spool", "gr1"), ("rl.mem", "gr2")] {
        let [(gp, p), (gb, b)] = want(prefix);
        // The polls (from the JSON twin) whose datapoints carbon lacks.
        let stored = carbon.fetch(&format!("{prefix}.rl_a.pkts"));
        let missing: Vec<(u64, u64)> = recs
            .iter()
            .map(|r| (r.req_u64("oob.time.sec"), r.req_u64("sum.pkts")))
            .filter(|(t, v)| stored.get(t) != Some(&(*v as f64)))
            .collect();
        assert!(
            ok && gp == p && gb == b,
            "{id} ({prefix}): whisper holds {gp} packets / {gb} bytes, the kernel counted \
             {p} / {b}; polls missing (time, packets): {missing:?}; carbon was away \
             {away:?}\n{log}\n{}",
            carbon.log()
        );
        assert!(
            log.contains(&format!("{id}: re-sent ")),
            "{id} should have replayed its window after the restart\n{log}"
        );
        assert!(
            summary.contains(&format!("{id} (GRAPHITE resend):")),
            "{id}'s window counters belong in the exit summary\n{summary}"
        );
    }
    assert!(pkts > 1000, "traffic ran the whole time: {pkts} packets");
    for l in summary.lines().filter(|l| l.contains("(GRAPHITE resend):")) {
        eprintln!("{l}");
    }
}
