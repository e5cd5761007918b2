//! ulogd2 and rulogd, side by side, on the same conntrack events.
//!
//! Both daemons run NFCT → IP2STR → JSON with the same ulogd.conf (apart
//! from the output file) in one network namespace. ctnetlink events are
//! multicast, so both hear every event; `conntrack -F` ends the flows. The
//! two JSON files are compared record by record (matched by `ct.id` and
//! `ct.event`), key by key and in key order. Times the kernel gives are
//! compared exactly; times a daemon takes from its own clock (ulogd's
//! `gettimeofday` when an event carries no timestamp) within a tolerance.
//!
//! Run: `cargo build --release -p rulogd && RULOGD_KERNEL_TESTS=1 cargo test
//! -p rulogd-tests --test differential_nfct` (root needed).
//! `RULOGD_BIN=/usr/sbin/ulogd` compares ulogd with itself.

use rulogd_tests::daemon::oracle_mode;
use rulogd_tests::traffic::conntrack_flows;
use rulogd_tests::{self as lab, Daemon, Kind, Netns, Record, TempDir};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Keys rulogd adds on purpose (docs/COMPATIBILITY.md, NFCT): ulogd 2.0.9's
/// ICMPv6 type and code, which 2.0.8 does not have.
const EXTRA_KEYS: &[&str] = &["icmpv6.code", "icmpv6.type"];
const TIME_KEYS: &[&str] = &[
    "flow.start.sec",
    "flow.start.usec",
    "flow.end.sec",
    "flow.end.usec",
];
/// Largest distance between two daemons' clock readings for one event.
const CLOCK_TOLERANCE_S: f64 = 0.5;

const CONF: &str = concat!(
    lab::conf_global!("ct1:NFCT,ip2str1:IP2STR,json1:JSON"),
    "\n\
[ct1]
{NFCT}

[json1]
file=\"{FILE}\"
sync=1
"
);

/// Netlink netfilter sockets in the namespace that joined conntrack event
/// group `bit` (`/proc/net/netlink`, Groups column).
fn subscribed(ns: &Netns, bit: u32) -> usize {
    let text = ns.read_proc_net("netlink").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"12")
                && f.get(3)
                    .and_then(|g| u32::from_str_radix(g, 16).ok())
                    .is_some_and(|g| g & bit != 0)
        })
        .count()
}

struct Pair {
    dir: TempDir,
    ulogd: Daemon,
    rulogd: Daemon,
    files: [PathBuf; 2],
}

impl Pair {
    fn start(ns: &Netns, tag: &str, nfct: &str, group_bit: u32) -> Pair {
        let dir = TempDir::new(tag);
        let files = [
            dir.path().join("ulogd.json"),
            dir.path().join("rulogd.json"),
        ];
        let conf = |f: &Path| {
            lab::fill(
                CONF,
                &[("NFCT", nfct.to_string()), ("FILE", lab::path_str(f))],
            )
        };
        let before = subscribed(ns, group_bit);
        let ulogd = Daemon::ulogd(ns, dir.path(), &conf(&files[0]), &[], &[&files[0]]);
        let rulogd = Daemon::rulogd(ns, dir.path(), &conf(&files[1]), &[], &[&files[1]]);
        if group_bit != 0 {
            assert!(
                lab::wait_until(Duration::from_secs(10), || subscribed(ns, group_bit)
                    >= before + 2),
                "both daemons should have joined the conntrack event groups"
            );
        }
        Pair {
            dir,
            ulogd,
            rulogd,
            files,
        }
    }

    /// Waits for `n` records in both files, stops both daemons and returns
    /// their records.
    fn finish(self, n: usize) -> (Vec<Record>, Vec<Record>, TempDir) {
        let [u, r] = &self.files;
        let ok = lab::wait_until(Duration::from_secs(15), || {
            lab::count_lines(u) >= n && lab::count_lines(r) >= n
        });
        // Anything beyond n would come now.
        std::thread::sleep(Duration::from_millis(300));
        if !ok {
            panic!(
                "expected {n} records: ulogd2 wrote {}, rulogd {}\n{}\n{}",
                lab::count_lines(u),
                lab::count_lines(r),
                self.ulogd.log_text(),
                self.rulogd.log_text()
            );
        }
        self.ulogd.stop();
        self.rulogd.stop();
        (lab::read_records(u), lab::read_records(r), self.dir)
    }
}

fn key_of(r: &Record) -> (u64, u64) {
    (r.req_u64("ct.id"), r.req_u64("ct.event"))
}

fn time(r: &Record, which: &str) -> Option<f64> {
    let s = r.u64(&format!("flow.{which}.sec"))?;
    let u = r.u64(&format!("flow.{which}.usec")).unwrap_or(0);
    Some(s as f64 + u as f64 / 1e6)
}

/// Compares the two daemons' records. `kernel_time(record, "start"|"end")`
/// says whether that time came from the kernel (exact) or a daemon's clock.
fn compare(u: &[Record], r: &[Record], kernel_time: impl Fn(&Record, &str) -> bool, dir: &TempDir) {
    let mut u: Vec<&Record> = u.iter().collect();
    let mut r: Vec<&Record> = r.iter().collect();
    u.sort_by_key(|x| key_of(x));
    r.sort_by_key(|x| key_of(x));
    let ku: Vec<_> = u.iter().map(|x| key_of(x)).collect();
    let kr: Vec<_> = r.iter().map(|x| key_of(x)).collect();
    assert_eq!(
        ku,
        kr,
        "different flows/events; files in {}",
        dir.path().display()
    );
    let skip: Vec<&str> = EXTRA_KEYS.iter().chain(TIME_KEYS).copied().collect();
    let mut report = Vec::new();
    for (a, b) in u.iter().zip(&r) {
        let mut d = lab::json::compare_records(a, b, &skip, ("ulogd2", "rulogd"));
        // rulogd may add the ICMPv6 keys, nothing else.
        for k in EXTRA_KEYS {
            if a.has(k) {
                d.push(format!("  {k}: ulogd2 has it"));
            }
        }
        if !oracle_mode() && b.has("icmpv6.type") != (b.u64("orig.ip.protocol") == Some(58)) {
            d.push("  icmpv6.type present iff ICMPv6".into());
        }
        for which in ["start", "end"] {
            let (ta, tb) = (time(a, which), time(b, which));
            let same = match (ta, tb) {
                (None, None) => true,
                (Some(x), Some(y)) if kernel_time(a, which) => {
                    let k = |r: &Record, s: &str| r.get(&format!("flow.{which}.{s}")).cloned();
                    k(a, "sec") == k(b, "sec") && k(a, "usec") == k(b, "usec") && x == y
                }
                (Some(x), Some(y)) => (x - y).abs() <= CLOCK_TOLERANCE_S,
                _ => false,
            };
            if !same {
                d.push(format!("  flow.{which}: ulogd2={ta:?} rulogd={tb:?}"));
            }
        }
        if !d.is_empty() {
            report.push(format!(
                "{}\n  ulogd2: {}\n  rulogd: {}",
                d.join("\n"),
                a.line,
                b.line
            ));
        }
    }
    assert!(
        report.is_empty(),
        "ulogd2 and rulogd differ; files in {}\n{}",
        dir.path().display(),
        report.join("\n")
    );
}

/// The counters the kernel gives for our traffic, checked on one side.
fn check_counters(recs: &[Record], rulogd: bool) {
    let destroy = |proto: u64, fam: u64| {
        recs.iter()
            .find(|r| {
                r.u64("ct.event") == Some(4)
                    && r.u64("orig.ip.protocol") == Some(proto)
                    && r.u64("oob.family") == Some(fam)
            })
            .unwrap_or_else(|| panic!("no DESTROY for protocol {proto} family {fam}"))
    };
    let udp4 = destroy(17, 2);
    // 3 datagrams of 64 bytes each way: 20 IP + 8 UDP + 64.
    assert_eq!(udp4.u64("orig.raw.pktcount"), Some(3), "{}", udp4.line);
    assert_eq!(udp4.u64("orig.raw.pktlen"), Some(3 * 92));
    assert_eq!(udp4.u64("reply.raw.pktcount"), Some(3));
    assert_eq!(udp4.u64("reply.raw.pktlen"), Some(3 * 92));
    let udp6 = destroy(17, 10);
    assert_eq!(udp6.u64("orig.raw.pktlen"), Some(2 * 148), "{}", udp6.line);
    let icmp6 = destroy(58, 10);
    assert_eq!(icmp6.u64("orig.raw.pktcount"), Some(3), "{}", icmp6.line);
    if rulogd {
        assert_eq!(icmp6.u64("icmpv6.type"), Some(128));
    }
    let icmp = destroy(1, 2);
    assert_eq!(
        (icmp.u64("icmp.type"), icmp.u64("icmp.code")),
        (Some(8), Some(0))
    );
    assert_eq!(icmp.u64("reply.raw.pktcount"), Some(2));
    let tcp = destroy(6, 2);
    assert!(tcp.u64("orig.raw.pktlen").unwrap() > 3000, "{}", tcp.line);
    assert_eq!(tcp.str("src_ip"), Some("127.0.0.1"));
}

/// `hash_enable=0`: every NEW and DESTROY event, with kernel timestamps and
/// accounting on. NEW carries no timestamp (daemon clocks); DESTROY carries
/// both kernel times.
#[test]
fn events_new_and_destroy() {
    lab::skip_unless_root!();
    let ns = Netns::with_conntrack("dct-ev", true, true);
    let pair = Pair::start(&ns, "dct-ev", "hash_enable=0", 0x5);
    ns.run_in_thread(|| conntrack_flows(7100, true));
    ns.conntrack_flush();
    let (u, r, dir) = pair.finish(12);
    assert_eq!(u.len(), 12, "6 NEW + 6 DESTROY");
    compare(&u, &r, |rec, _| rec.u64("ct.event") == Some(4), &dir);
    check_counters(&u, false);
    check_counters(&r, !oracle_mode());
    assert!(u
        .iter()
        .filter(|x| x.u64("ct.event") == Some(1))
        .all(|x| x.u64("orig.raw.pktcount") == Some(0)));
}

/// The default hash mode: one DESTROY per flow, its start time noted at
/// NEW (a daemon's clock), its end the kernel's; accounting on.
#[test]
fn hash_mode_destroy_only() {
    lab::skip_unless_root!();
    let ns = Netns::with_conntrack("dct-hash", true, true);
    let pair = Pair::start(&ns, "dct-hash", "hash_enable=1", 0x5);
    ns.run_in_thread(|| conntrack_flows(7200, true));
    ns.conntrack_flush();
    let (u, r, dir) = pair.finish(6);
    assert_eq!(u.len(), 6);
    assert!(u.iter().all(|x| x.u64("ct.event") == Some(4)));
    compare(&u, &r, |_, which| which == "end", &dir);
    check_counters(&r, !oracle_mode());
}

/// No accounting and no timestamps: counters are 0 (still present) and
/// every time is a daemon's clock.
#[test]
fn hash_mode_without_acct_or_timestamps() {
    lab::skip_unless_root!();
    let ns = Netns::with_conntrack("dct-noacct", false, false);
    let pair = Pair::start(&ns, "dct-noacct", "", 0x5);
    ns.run_in_thread(|| conntrack_flows(7300, true));
    ns.conntrack_flush();
    let (u, r, dir) = pair.finish(6);
    compare(&u, &r, |_, _| false, &dir);
    assert!(r
        .iter()
        .all(|x| x.u64("orig.raw.pktcount") == Some(0) && x.has("flow.end.sec")));
}

/// The accept filters: ulogd compiles them to a BPF socket filter, rulogd
/// checks the decoded tuple; the same flows must come out. IPv4 networks
/// only, so IPv6 flows are rejected.
#[test]
fn accept_filters() {
    lab::skip_unless_root!();
    let ns = Netns::with_conntrack("dct-filter", true, true);
    let pair = Pair::start(
        &ns,
        "dct-filter",
        "hash_enable=0\naccept_src_filter=127.0.0.0/8\naccept_dst_filter=10.9.9.0/24,127.0.0.1/32\naccept_proto_filter=udp,icmp",
        0x5,
    );
    ns.run_in_thread(|| conntrack_flows(7400, true));
    ns.conntrack_flush();
    let (u, r, dir) = pair.finish(4);
    assert_eq!(u.len(), 4, "UDP and ICMP over IPv4, NEW and DESTROY");
    assert!(u
        .iter()
        .all(|x| x.u64("oob.family") == Some(2) && x.u64("orig.ip.protocol") != Some(6)));
    compare(&u, &r, |rec, _| rec.u64("ct.event") == Some(4), &dir);
}

/// Polling: both daemons dump the table every second and log the flows
/// that have gone, with the counters of their last dump. ulogd 2.0.8 sets
/// no end time on these (2.0.9 and rulogd: the time the flow was found gone).
#[test]
fn polling_mode() {
    lab::skip_unless_root!();
    let ns = Netns::with_conntrack("dct-poll", true, true);
    let pair = Pair::start(&ns, "dct-poll", "pollinterval=1", 0);
    ns.run_in_thread(|| conntrack_flows(7500, true));
    // Both have dumped the final counters after two intervals.
    std::thread::sleep(Duration::from_millis(2500));
    ns.conntrack_flush();
    let (u, r, dir) = pair.finish(6);
    assert!(
        u.iter().all(|x| !x.has("flow.end.sec")),
        "ulogd 2.0.8: no end on purge"
    );
    assert!(oracle_mode() || r.iter().all(|x| x.has("flow.end.sec")));
    let strip = |v: &[Record]| -> Vec<Record> {
        v.iter()
            .map(|x| {
                let mut y = x.clone();
                y.fields.retain(|(k, _)| !k.starts_with("flow.end"));
                y
            })
            .collect()
    };
    // Start times: the kernel's (timestamps are on).
    compare(&strip(&u), &strip(&r), |_, w| w == "start", &dir);
    check_counters(&r, !oracle_mode());
}

const TEXT_CONF: &str = concat!(
    lab::conf_global!(
        "ct1:NFCT,ip2str1:IP2STR,pf1:PRINTFLOW,emu1:LOGEMU",
        "ct1:NFCT,ip2str1:IP2STR,nacct1:NACCT",
        "ct1:NFCT,ip2str1:IP2STR,json1:JSON"
    ),
    "\n\
[ct1]
hash_enable=1

[emu1]
file=\"{DIR}/{WHO}.emu\"
sync=1

[nacct1]
file=\"{DIR}/{WHO}.nacct\"
sync=1

[json1]
file=\"{DIR}/{WHO}.json\"
sync=1
"
);

/// PRINTFLOW (through LOGEMU) and NACCT lines for the same flows, against
/// ulogd2's, with its two documented fixes undone on ulogd's side: the ICMP
/// `TYPE=`/`CODE=` swap of PRINTFLOW, and NACCT's reply counters (rulogd
/// prints the original direction's, checked against the JSON records).
#[test]
fn printflow_and_nacct_lines() {
    lab::skip_unless_root!();
    let ns = Netns::with_conntrack("dct-text", true, true);
    let dir = TempDir::new("dct-text");
    let d = lab::path_str(dir.path());
    let conf = |who: &str| lab::fill(TEXT_CONF, &[("DIR", d.clone()), ("WHO", who.into())]);
    let file = |who: &str, ext: &str| dir.path().join(format!("{who}.{ext}"));
    let before = subscribed(&ns, 0x5);
    let mut daemons = Vec::new();
    for (kind, who) in [(Kind::Ulogd, "ulogd"), (Kind::Rulogd, "rulogd")] {
        let outs = [file(who, "emu"), file(who, "nacct"), file(who, "json")];
        let refs: Vec<&Path> = outs.iter().map(PathBuf::as_path).collect();
        daemons.push(Daemon::start(
            &ns,
            kind,
            dir.path(),
            who,
            &conf(who),
            &[],
            &refs,
        ));
    }
    assert!(lab::wait_until(Duration::from_secs(10), || subscribed(
        &ns, 0x5
    ) >= before + 2));
    ns.run_in_thread(|| conntrack_flows(7600, true));
    ns.conntrack_flush();
    let all = ["ulogd", "rulogd"]
        .iter()
        .flat_map(|w| ["emu", "nacct", "json"].map(|e| file(w, e)));
    let files: Vec<PathBuf> = all.collect();
    assert!(
        lab::wait_until(Duration::from_secs(15), || files
            .iter()
            .all(|f| lab::count_lines(f) >= 6)),
        "six lines in each of {files:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    for d in daemons {
        d.stop();
    }
    let lines = |who: &str, ext: &str| -> Vec<String> {
        let t = std::fs::read_to_string(file(who, ext)).unwrap();
        t.lines().map(str::to_string).collect()
    };
    // LOGEMU: drop "Mmm dd hh:mm:ss host " (the time is the write time).
    let body = |l: &String| lab::after_syslog_head(l).to_string();
    let unswap = |l: String| -> String {
        // ulogd prints TYPE=<code> CODE=<type>; put them back.
        let mut out = Vec::new();
        let words: Vec<&str> = l.split(' ').collect();
        let mut i = 0;
        while i < words.len() {
            if let (Some(t), Some(c)) = (
                words[i].strip_prefix("TYPE="),
                words.get(i + 1).and_then(|w| w.strip_prefix("CODE=")),
            ) {
                out.push(format!("TYPE={c}"));
                out.push(format!("CODE={t}"));
                i += 2;
            } else {
                out.push(words[i].to_string());
                i += 1;
            }
        }
        out.join(" ")
    };
    if let Some(day) = faked_day() {
        // Under a faked single-digit day both daemons pad the date: the body
        // above must still be cut at the host, not inside the date.
        for l in lines("ulogd", "emu").iter().chain(&lines("rulogd", "emu")) {
            assert_eq!(&l[3..6], format!("{day:>3}").as_str(), "{l:?}");
        }
    }
    let mut u: Vec<String> = lines("ulogd", "emu").iter().map(body).map(unswap).collect();
    let mut r: Vec<String> = lines("rulogd", "emu")
        .iter()
        .map(body)
        .map(|l| if oracle_mode() { unswap(l) } else { l })
        .collect();
    u.sort();
    r.sort();
    assert_eq!(
        u,
        r,
        "PRINTFLOW lines differ; files in {}",
        dir.path().display()
    );
    assert!(
        r.iter().any(|l| l.contains("PROTO=ICMP TYPE=8 CODE=0")),
        "{r:?}"
    );
    assert!(r.iter().all(|l| l.starts_with("[DESTROY] ORIG: SRC=")));

    // NACCT: the same first six fields; counters: ulogd the reply's,
    // rulogd the original direction's (from each side's JSON records).
    let json = lab::read_records(&file("rulogd", "json"));
    let counters = |f: &[&str], dir: &str| -> (String, String) {
        let rec = json
            .iter()
            .find(|j| {
                j.str("src_ip") == Some(f[2])
                    && j.u64("orig.ip.protocol").map(|p| p.to_string()).as_deref() == Some(f[1])
                    && j.u64("flow.end.sec").map(|p| p.to_string()).as_deref() == Some(f[0])
                    && (f[1] == "1" || j.u64("orig.l4.sport").unwrap_or(0).to_string() == f[3])
            })
            .unwrap_or_else(|| panic!("no JSON record for NACCT line {f:?}"));
        (
            rec.req_u64(&format!("{dir}.raw.pktcount")).to_string(),
            rec.req_u64(&format!("{dir}.raw.pktlen")).to_string(),
        )
    };
    let (un, rn) = (lines("ulogd", "nacct"), lines("rulogd", "nacct"));
    assert_eq!(un.len(), 6);
    let key = |l: &String| l.split('\t').skip(1).take(5).collect::<Vec<_>>().join("\t");
    for rl in &rn {
        let rf: Vec<&str> = rl.split('\t').collect();
        assert_eq!(rf.len(), 8, "{rl}");
        let ul = un
            .iter()
            .find(|u| key(u) == key(rl))
            .unwrap_or_else(|| panic!("ulogd has no line like {rl}"));
        let uf: Vec<&str> = ul.split('\t').collect();
        // flow.end.sec is the kernel's stop time on both sides.
        assert_eq!(uf[..6], rf[..6], "{ul} vs {rl}");
        assert_eq!(
            (rf[6].to_string(), rf[7].to_string()),
            counters(&rf, if oracle_mode() { "reply" } else { "orig" }),
            "{rl}"
        );
        assert_eq!(
            (uf[6].to_string(), uf[7].to_string()),
            counters(&rf, "reply"),
            "{ul}"
        );
    }
}

/// The day of the month RULOGD_FAKETIME fakes (`@YYYY-MM-DD …`), if any.
fn faked_day() -> Option<u32> {
    let spec = std::env::var("RULOGD_FAKETIME").ok()?;
    spec.strip_prefix('@')?.get(8..10)?.parse().ok()
}

#[test]
fn syslog_head_is_cut_by_width() {
    let body = "[DESTROY] ORIG: SRC=10.0.0.1";
    for line in [
        format!("Dec  3 09:05:01 host {body}"),
        format!("Dec 13 09:05:01 host {body}"),
        format!("Dec  3 09:05:01 a-long.host.name {body}"),
    ] {
        assert_eq!(lab::after_syslog_head(&line), body, "{line:?}");
    }
    assert_eq!(lab::after_syslog_head("short"), "");
}
