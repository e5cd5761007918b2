//! NFCT → IPFIX over UDP to a real collector: nfcapd from Debian's nfdump.
//!
//! One rulogd in a network namespace runs three stacks on one NFCT input:
//! JSON (the reference for what conntrack reported), IPFIX with biflow
//! records and IPFIX with one record per direction, each to its own
//! nfcapd. After six flows (UDP, TCP and ICMP echo, IPv4 and IPv6) end,
//! `nfdump -o csv` must show every flow with the JSON record's addresses,
//! ports, protocol, packet and byte counts per direction and duration,
//! nfcapd must have counted no sequence failure, and tshark must decode
//! every datagram (all four templates, biflow reverse elements) without a
//! malformed-packet or expert warning.
//!
//! A second test runs ulogd2's IPFIX output beside rulogd's on the same
//! conntrack events, each to its own nfcapd, and compares what nfdump
//! shows (docs/COMPATIBILITY.md lists the deliberate differences).
//!
//! Run: `cargo build -p rulogd && RULOGD_KERNEL_TESTS=1 cargo test -p
//! rulogd-tests --test ipfix_nfcapd` (root needed).

use rulogd_tests::nfcapd::{self, Nfcapd};
use rulogd_tests::traffic::conntrack_flows;
use rulogd_tests::tshark::{check_clean, Tshark};
use rulogd_tests::{self as lab, Daemon, Netns, Record, TempDir};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const CONF: &str = concat!(
    lab::conf_global!(
        "ct1:NFCT,ip2str1:IP2STR,json1:JSON",
        "ct1:NFCT,bi:IPFIX",
        "ct1:NFCT,uni:IPFIX"
    ),
    "\n\
[ct1]

[json1]
file=\"{FILE}\"
sync=1

[bi]
oid=7
host=\"127.0.0.1\"
port={PORT_BI}
proto=\"udp\"

[uni]
oid=8
host=\"127.0.0.1\"
port={PORT_UNI}
proto=\"udp\"
biflow=0
"
);

/// Milliseconds as the exporter computes them from the kernel's times.
fn ms(r: &Record, which: &str) -> u64 {
    r.req_u64(&format!("flow.{which}.sec")) * 1000 + r.req_u64(&format!("flow.{which}.usec")) / 1000
}

/// The nfdump row for one direction of `r`; `reply` picks the reply tuple.
fn find<'a>(
    rows: &'a [HashMap<String, String>],
    r: &Record,
    reply: bool,
) -> Option<&'a HashMap<String, String>> {
    let side = if reply { "reply" } else { "orig" };
    let pr = nfcapd::proto_name(r.req_u64("orig.ip.protocol"));
    // IP2STR's strings, under the names JSON gives ulogd's key names.
    let (sa, da) = if reply {
        (
            r.req_str("reply.ip.saddr.str"),
            r.req_str("reply.ip.daddr.str"),
        )
    } else {
        (r.req_str("src_ip"), r.req_str("dest_ip"))
    };
    let ports = r.u64(&format!("{side}.l4.sport")).map(|s| {
        (
            s.to_string(),
            r.req_u64(&format!("{side}.l4.dport")).to_string(),
        )
    });
    rows.iter().find(|row| {
        row["pr"] == pr
            && row["sa"] == sa
            && row["da"] == da
            && ports
                .as_ref()
                .map_or(true, |(sp, dp)| row["sp"] == *sp && row["dp"] == *dp)
            && icmp_dport(r).map_or(true, |dp| row["dp"] == dp.to_string())
    })
}

/// nfdump shows ICMP type and code as the destination port, type * 256 + code.
fn icmp_dport(r: &Record) -> Option<u64> {
    let (t, c) = ["icmp", "icmpv6"]
        .iter()
        .find_map(|p| Some((r.u64(&format!("{p}.type"))?, r.u64(&format!("{p}.code"))?)))?;
    Some(t * 256 + c)
}

fn num(row: &HashMap<String, String>, k: &str) -> u64 {
    row[k]
        .parse()
        .unwrap_or_else(|_| panic!("{k}={} in {row:?}", row[k]))
}

fn duration_ms(row: &HashMap<String, String>) -> u64 {
    (row["td"].parse::<f64>().unwrap() * 1000.0).round() as u64
}

#[test]
fn nfct_flows_reach_nfcapd_with_exact_counts_biflow_and_per_direction() {
    lab::skip_unless_root!();
    let ns = Netns::with_conntrack("ipfix", true, true);
    let dir = TempDir::new("ipfix-nfcapd");
    let (pb, pu) = (lab::free_port(), lab::free_port());
    let bi = Nfcapd::start(&ns, pb, &dir.path().join("bi"), None);
    let uni = Nfcapd::start(&ns, pu, &dir.path().join("uni"), None);
    let json = dir.path().join("flows.json");
    let conf = lab::fill(
        CONF,
        &[
            ("FILE", lab::path_str(&json)),
            ("PORT_BI", pb.to_string()),
            ("PORT_UNI", pu.to_string()),
        ],
    );
    let cap = Tshark::start(&ns, dir.path(), "udp", &[pb, pu]);
    let d = Daemon::rulogd(&ns, dir.path(), &conf, &[], &[&json]);
    // NFCT subscribes before "started"; give the socket a moment anyway.
    std::thread::sleep(Duration::from_millis(300));
    ns.run_in_thread(|| conntrack_flows(7000, true));
    ns.conntrack_flush();
    assert!(
        lab::wait_until(Duration::from_secs(10), || lab::count_lines(&json) >= 6),
        "six flows in JSON\n{}",
        d.log_text()
    );
    // Idle flush of the IPFIX messages, then the collectors' intake.
    std::thread::sleep(Duration::from_millis(500));
    d.stop();
    let flows = lab::read_records(&json);
    assert_eq!(flows.len(), 6, "{flows:?}");
    let decoded = cap.decode();
    check_clean(&decoded);
    let frames = decoded.lines().filter(|l| l.starts_with("Frame ")).count();
    let ipfix = decoded
        .lines()
        .filter(|l| l.trim() == "Version: 10")
        .count();
    assert!(frames >= 4, "{decoded}");
    assert_eq!(ipfix, frames, "every datagram is IPFIX version 10");
    for tid in 256..=259 {
        assert!(
            decoded.contains(&format!("Template Id: {tid}")),
            "template {tid} decoded\n{decoded}"
        );
    }
    for want in [
        "SrcAddr: ::1",
        "SrcAddr: 127.0.0.1",
        "(Reverse Type 1 BYTES)",
        "StartTime",
    ] {
        assert!(decoded.contains(want), "{want} in the decode\n{decoded}");
    }
    let (bi_rows, bi_stat) = bi.stop();
    let (uni_rows, uni_stat) = uni.stop();
    assert_eq!(bi_rows.len(), 6, "one biflow record per flow: {bi_rows:#?}");
    let replies = flows
        .iter()
        .filter(|r| r.req_u64("reply.raw.pktcount") > 0)
        .count();
    assert_eq!(uni_rows.len(), 6 + replies, "{uni_rows:#?}");
    let mut families = (0, 0);
    for f in &flows {
        let (op, ob) = (f.req_u64("orig.raw.pktcount"), f.req_u64("orig.raw.pktlen"));
        let (rp, rb) = (
            f.req_u64("reply.raw.pktcount"),
            f.req_u64("reply.raw.pktlen"),
        );
        let want_ms = ms(f, "end") - ms(f, "start");
        let row = find(&bi_rows, f, false).unwrap_or_else(|| panic!("{f:?} in {bi_rows:#?}"));
        assert_eq!(
            [
                num(row, "ipkt"),
                num(row, "ibyt"),
                num(row, "opkt"),
                num(row, "obyt")
            ],
            [op, ob, rp, rb],
            "biflow counts of {f:?}"
        );
        assert_eq!(duration_ms(row), want_ms, "duration of {row:?}");
        let fwd = find(&uni_rows, f, false).unwrap_or_else(|| panic!("{f:?} in {uni_rows:#?}"));
        assert_eq!(
            [num(fwd, "ipkt"), num(fwd, "ibyt"), num(fwd, "opkt")],
            [op, ob, 0]
        );
        let back = find(&uni_rows, f, true).unwrap_or_else(|| panic!("reply of {f:?}"));
        assert_eq!([num(back, "ipkt"), num(back, "ibyt")], [rp, rb]);
        assert_eq!(duration_ms(back), want_ms);
        if f.req_str("src_ip").contains(':') {
            families.1 += 1;
        } else {
            families.0 += 1;
        }
    }
    assert_eq!(families, (3, 3), "IPv4 and IPv6 flows");
    // The UDP flows' sizes by hand: IP + UDP headers + payload.
    let udp4 = flows
        .iter()
        .find(|f| f.req_u64("orig.ip.protocol") == 17 && !f.req_str("src_ip").contains(':'))
        .unwrap();
    assert_eq!(udp4.req_u64("orig.raw.pktlen"), 3 * (20 + 8 + 64));
    // The first flow's start, as nfdump stores it: seconds and milliseconds.
    let first = flows.iter().map(|f| ms(f, "start")).min().unwrap();
    assert_eq!(
        icmp_dport(flows.iter().find(|f| f.has("icmp.type")).unwrap()),
        Some(8 * 256)
    );
    for stat in [&bi_stat, &uni_stat] {
        let field = |k: &str| -> u64 {
            let l = stat
                .lines()
                .find(|l| l.starts_with(k))
                .unwrap_or_else(|| panic!("{k} in {stat}"));
            l[k.len()..].trim().parse().unwrap()
        };
        assert_eq!(
            (field("First:"), field("msec_first:")),
            (first / 1000, first % 1000)
        );
        let fails = stat
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("sequence failures"))
            .unwrap_or_else(|| panic!("no sequence failure line in\n{stat}"));
        assert!(fails.trim_end().ends_with(": 0"), "{fails}");
    }
}

const ULOGD_CONF: &str = concat!(
    lab::conf_global!("ct1:NFCT,ipfix1:IPFIX"),
    "\n\
[ct1]

[ipfix1]
oid=3
host=\"127.0.0.1\"
port={PORT}
proto=\"udp\"
mtu=140
"
);

/// The rows of the test's IPv4 flows, by 5-tuple: not the filler (port
/// 9999) nor the daemons' own export to the collectors (`skip`).
fn by_tuple<'a>(
    rows: &'a [HashMap<String, String>],
    skip: &[u16],
) -> HashMap<[String; 5], &'a HashMap<String, String>> {
    let skip: Vec<String> = skip.iter().chain(&[9999]).map(u16::to_string).collect();
    rows.iter()
        .filter(|r| r["sa"] == "127.0.0.1" && !skip.contains(&r["dp"]))
        .map(|r| {
            // ulogd2 sends no ICMP type/code: compare ICMP by addresses.
            let icmp = r["pr"] == "ICMP";
            let port = |k: &str| if icmp { String::new() } else { r[k].clone() };
            (
                [
                    r["sa"].clone(),
                    r["da"].clone(),
                    port("sp"),
                    port("dp"),
                    r["pr"].clone(),
                ],
                r,
            )
        })
        .collect()
}

#[test]
fn ulogd2_and_rulogd_ipfix_show_the_same_ipv4_flows_in_nfdump() {
    lab::skip_unless_root!();
    let ns = Netns::with_conntrack("ipfixdiff", true, true);
    let dir = TempDir::new("ipfix-diff");
    let (pu, pr) = (lab::free_port(), lab::free_port());
    let cu = Nfcapd::start(&ns, pu, &dir.path().join("ulogd"), None);
    let cr = Nfcapd::start(&ns, pr, &dir.path().join("rulogd"), None);
    // The same ulogd.conf for both daemons, but for the collector's port.
    let conf = |p: u16| lab::fill(ULOGD_CONF, &[("PORT", p.to_string())]);
    let u = Daemon::ulogd(&ns, dir.path(), &conf(pu), &[], &[]);
    let r = Daemon::rulogd(&ns, dir.path(), &conf(pr), &[], &[]);
    std::thread::sleep(Duration::from_millis(500));
    ns.run_in_thread(|| conntrack_flows(7100, true));
    ns.conntrack_flush();
    // ulogd2 2.0.8 sends a message only once the next record does not fit
    // (its flush timer fires once): push the real flows out with filler.
    std::thread::sleep(Duration::from_millis(200));
    ns.run_in_thread(|| {
        for _ in 0..8 {
            rulogd_tests::traffic::udp_send(SocketAddr::from(([127, 0, 0, 1], 9999)), 1, 10)
                .unwrap();
        }
    });
    ns.conntrack_flush();
    std::thread::sleep(Duration::from_secs(1));
    u.stop();
    r.stop();
    let (urows, _) = cu.stop();
    let (rrows, _) = cr.stop();
    let (ut, rt) = (by_tuple(&urows, &[pu, pr]), by_tuple(&rrows, &[pu, pr]));
    assert_eq!(ut.len(), 3, "ulogd2's IPv4 flows: {urows:#?}");
    let mut ukeys: Vec<_> = ut.keys().collect();
    let mut rkeys: Vec<_> = rt.keys().collect();
    ukeys.sort();
    rkeys.sort();
    assert_eq!(ukeys, rkeys, "the same IPv4 flows");
    for (k, ur) in &ut {
        let rr = rt[k];
        // ulogd2 sums both directions into one count; rulogd keeps the
        // reply direction apart (docs/COMPATIBILITY.md, IPFIX).
        assert_eq!(
            (num(ur, "ipkt"), num(ur, "ibyt")),
            (
                num(rr, "ipkt") + num(rr, "opkt"),
                num(rr, "ibyt") + num(rr, "obyt")
            ),
            "{k:?}: ulogd2 {ur:?}\nrulogd {rr:?}"
        );
        assert_eq!((num(ur, "opkt"), num(ur, "obyt")), (0, 0));
        // nfdump 1.7 does not read ulogd2's flowStartSeconds/flowEndSeconds.
        assert_eq!(ur["ts"], "1970-01-01 00:00:00", "{ur:?}");
        assert_ne!(rr["ts"], ur["ts"]);
    }
    // ulogd2 2.0.8 sends IPv6 flows with the addresses cut to 4 bytes;
    // rulogd sends them whole (the other test checks them).
    assert!(urows
        .iter()
        .any(|r| r["pr"] == "ICMP6" && r["sa"] == "0.0.0.0"));
    assert!(rrows.iter().any(|r| r["pr"] == "ICMP6" && r["sa"] == "::1"));
}

/// FLOW records (CAPTURE over a capture file → BASE → FLOW) go out as IPFIX
/// just as NFCT's do: nfdump shows every flow the JSON output of the same
/// stack wrote, with its packets and bytes per direction.
#[test]
fn flow_records_from_a_capture_file_reach_nfcapd() {
    let (ns, dir) = lab::netns_or_skip!("ipfix-flow");
    let port = lab::free_port();
    let col = Nfcapd::start(&ns, port, &dir.path().join("col"), None);
    let pcap =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/capture_file/seed-eth-us.pcap");
    let json = dir.path().join("flows.json");
    let conf = format!(
        "[global]\nstack=cap1:CAPTURE,base1:BASE,flow1:FLOW,ip2str1:IP2STR,json1:JSON\n\
         stack=cap1:CAPTURE,base1:BASE,flow1:FLOW,ipfix1:IPFIX\n\
         [cap1]\nfile=\"{}\"\n[json1]\nfile=\"{}\"\n\
         [ipfix1]\nhost=\"127.0.0.1\"\nport={port}\nproto=\"udp\"\noid=7\n",
        lab::path_str(&pcap),
        lab::path_str(&json)
    );
    let conf_path = dir.path().join("rulogd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let out = ns
        .command("env")
        .arg(format!(
            "STATE_DIRECTORY={}",
            dir.path().join("state").display()
        ))
        .args(["timeout", "60"])
        .arg(lab::rulogd_bin())
        .arg("-c")
        .arg(&conf_path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let (rows, stat) = col.stop();
    let flows = lab::read_records(&json);
    assert!(flows.len() >= 2, "{flows:?}");
    assert_eq!(
        rows.len(),
        flows.len(),
        "nfdump rows vs flow records\n{rows:?}\n{stat}"
    );
    for r in &flows {
        let row = find(&rows, r, false)
            .unwrap_or_else(|| panic!("no nfdump row for {}\n{rows:?}", r.line));
        assert_eq!(
            num(row, "ipkt"),
            r.req_u64("orig.raw.pktcount"),
            "{}",
            r.line
        );
        assert_eq!(num(row, "ibyt"), r.req_u64("orig.raw.pktlen"), "{}", r.line);
        assert_eq!(
            num(row, "opkt"),
            r.req_u64("reply.raw.pktcount"),
            "{}",
            r.line
        );
        assert_eq!(
            num(row, "obyt"),
            r.req_u64("reply.raw.pktlen"),
            "{}",
            r.line
        );
    }
    assert!(stat.contains("Sequence failures: 0"), "{stat}");
}
