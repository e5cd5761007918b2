//! Kernel → rulogd → JSON, one network namespace per test.
//!
//! Each test loads an nft rule that logs with `log prefix "..." group N` (and
//! counts with a named counter), starts the daemon under test with the stack
//! NFLOG → BASE → IFINDEX → IP2STR → JSON, sends real traffic and asserts
//! concrete values, and that there is one line per packet the rule logged.
//!
//! Run: `cargo build --release --bins && cargo test -p rulogd-tests --test kernel_json`
//! (root needed). `RULOGD_BIN=/usr/sbin/ulogd` runs ulogd2 as the daemon
//! under test, which must pass too.

use rulogd_tests::traffic::{icmp_echo, tcp_session, udp_send};
use rulogd_tests::{self as lab, daemon, netns, Daemon, Netns, Record, TempDir};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The rule set of a test: a named counter `c` and an input chain whose
/// logging rules are `rules` (each should use `counter name "c"`).
/// Sets up the namespace, runs `traffic`, and returns the records of the
/// daemon under test after checking that it wrote exactly one line per
/// packet the rule counted.
fn run_case(
    ns: &Netns,
    tag: &str,
    group: u16,
    rules: &str,
    traffic: impl FnOnce(&Netns),
) -> Vec<Record> {
    ns.nft(&lab::counted_ruleset(rules)).unwrap();
    let dir = TempDir::new(tag);
    let json = dir.path().join("out.json");
    let mut d = Daemon::rulogd(
        ns,
        dir.path(),
        &lab::json_conf(group, &json),
        &[group],
        &[&json],
    );
    traffic(ns);
    // Loopback delivers synchronously, veth through the backlog softirq:
    // a short pause, then the counter is final.
    std::thread::sleep(Duration::from_millis(200));
    let logged = ns.counter("inet", "t", "c").unwrap() as usize;
    assert!(logged > 0, "the rule logged nothing");
    d.wait_lines(&json, logged, Duration::from_secs(10));
    // Anything beyond `logged` would be a duplicate: give it the chance to
    // show up (the kernel flushes its batch within 1 s) before stopping.
    assert!(
        daemon::wait_drained(ns, group, Duration::from_secs(5)),
        "group {group} not drained"
    );
    d.stop();
    let recs = lab::read_records(&json);
    assert_eq!(
        recs.len(),
        logged,
        "lines != packets logged ({})",
        daemon::drops_note(ns, group)
    );
    recs
}

/// Values every record of these tests has.
fn assert_common(r: &Record, prefix: &str, family: u64, proto: u64) {
    assert_eq!(r.req_str("oob.prefix"), prefix, "{}", r.line);
    assert_eq!(r.req_u64("oob.family"), family, "{}", r.line);
    assert_eq!(
        r.req_u64("oob.protocol"),
        if family == 2 { 2048 } else { 34525 },
        "{}",
        r.line
    );
    assert_eq!(r.req_u64("ip.protocol"), proto, "{}", r.line);
    assert_eq!(r.req_str("dvc"), "Netfilter");
    assert!(r.has("timestamp"), "{}", r.line);
    assert_eq!(r.req_u64("raw.pktcount"), 1);
    assert_eq!(r.req_u64("oob.hook"), 1, "input hook: {}", r.line);
    // IFINDEX always sets both names; the input device is lo.
    assert_eq!(r.req_str("oob.in"), "lo", "{}", r.line);
    assert_eq!(r.req_str("oob.out"), "", "{}", r.line);
}

fn loopback(family: u64) -> &'static str {
    if family == 2 {
        "127.0.0.1"
    } else {
        "::1"
    }
}

fn udp_case(tag: &str, group: u16, family: u64) {
    lab::skip_unless_root!();
    let ns = Netns::new(tag).unwrap();
    let rules =
        format!("  udp dport 9999 counter name \"c\" log prefix \"{tag}\" group {group} drop");
    let dst: SocketAddr = SocketAddr::new(loopback(family).parse().unwrap(), 9999);
    let mut sport = 0;
    let recs = run_case(&ns, tag, group, &rules, |ns| {
        sport = ns.run_in_thread(|| udp_send(dst, 5, 64)).unwrap();
    });
    assert_eq!(recs.len(), 5);
    // 64 bytes of payload + 8 (UDP) + 20 (IPv4) or 40 (IPv6).
    let l3 = if family == 2 { 92 } else { 112 };
    for r in &recs {
        assert_common(r, tag, family, 17);
        assert_eq!(r.req_str("src_ip"), loopback(family));
        assert_eq!(r.req_str("dest_ip"), loopback(family));
        assert_eq!(r.req_u64("src_port"), u64::from(sport));
        assert_eq!(r.req_u64("dest_port"), 9999);
        assert_eq!(r.req_u64("udp.len"), 72);
        assert_eq!(r.req_u64("raw.pktlen"), l3);
        if family == 2 {
            assert_eq!(r.req_u64("ip.totlen"), 92);
            assert_eq!(r.req_u64("ip.ihl"), 5);
        } else {
            assert_eq!(r.req_u64("ip6.payloadlen"), 72);
            assert_eq!(r.req_u64("ip6.nexthdr"), 17);
        }
    }
}

fn tcp_case(tag: &str, group: u16, family: u64) {
    lab::skip_unless_root!();
    let ns = Netns::new(tag).unwrap();
    let rules = format!(
        "  tcp dport 5555 counter name \"c\" log prefix \"{tag}\" group {group}\n\
         \x20 tcp sport 5555 counter name \"c\" log prefix \"{tag}\" group {group}"
    );
    let addr = SocketAddr::new(loopback(family).parse().unwrap(), 5555);
    let mut client = 0u64;
    let recs = run_case(&ns, tag, group, &rules, |ns| {
        let out = ns.run_in_thread(|| tcp_session(addr, 3000, 100)).unwrap();
        client = u64::from(out.client_port);
    });
    let flag = |r: &Record, f: &str| r.req_u64(&format!("tcp.{f}"));
    for r in &recs {
        assert_common(r, tag, family, 6);
        assert_eq!(r.req_str("src_ip"), loopback(family));
        let (s, d) = (r.req_u64("src_port"), r.req_u64("dest_port"));
        assert!(
            (s, d) == (client, 5555) || (s, d) == (5555, client),
            "{}",
            r.line
        );
        for k in [
            "seq", "ackseq", "window", "urg", "ack", "psh", "rst", "syn", "fin", "csum",
        ] {
            assert!(r.has(&format!("tcp.{k}")), "tcp.{k} missing: {}", r.line);
        }
        assert_eq!(flag(r, "rst"), 0, "{}", r.line);
    }
    // Handshake: SYN, SYN-ACK (acking SYN seq + 1), ACK.
    let (syn, synack, ack) = (&recs[0], &recs[1], &recs[2]);
    assert_eq!((flag(syn, "syn"), flag(syn, "ack")), (1, 0), "{}", syn.line);
    assert_eq!(syn.req_u64("src_port"), client);
    assert_eq!(
        (flag(synack, "syn"), flag(synack, "ack")),
        (1, 1),
        "{}",
        synack.line
    );
    assert_eq!(synack.req_u64("src_port"), 5555);
    assert_eq!(
        synack.req_u64("tcp.ackseq"),
        (syn.req_u64("tcp.seq") + 1) % (1 << 32)
    );
    assert_eq!((flag(ack, "syn"), flag(ack, "ack")), (0, 1), "{}", ack.line);
    // Data both ways (PSH) and a FIN from each side.
    for port in [client, 5555] {
        let from: Vec<&Record> = recs
            .iter()
            .filter(|r| r.req_u64("src_port") == port)
            .collect();
        assert!(
            from.iter().any(|r| flag(r, "psh") == 1),
            "no data from port {port}"
        );
        assert_eq!(
            from.iter().filter(|r| flag(r, "fin") == 1).count(),
            1,
            "FINs from {port}"
        );
    }
    // Sequence numbers: each FIN comes right after all the data its side
    // sent (3000 bytes from the client, 100 from the server).
    let fin_seq = |port: u64| {
        recs.iter()
            .find(|r| r.req_u64("src_port") == port && flag(r, "fin") == 1)
            .map(|r| r.req_u64("tcp.seq"))
            .unwrap()
    };
    assert_eq!(
        fin_seq(client),
        (syn.req_u64("tcp.seq") + 1 + 3000) % (1 << 32)
    );
    assert_eq!(
        fin_seq(5555),
        (synack.req_u64("tcp.seq") + 1 + 100) % (1 << 32)
    );
}

fn icmp_case(tag: &str, group: u16, family: u64) {
    lab::skip_unless_root!();
    let ns = Netns::new(tag).unwrap();
    let m = if family == 2 {
        "icmp type { echo-request, echo-reply }"
    } else {
        "icmpv6 type { echo-request, echo-reply }"
    };
    let rules = format!("  {m} counter name \"c\" log prefix \"{tag}\" group {group}");
    let dst: IpAddr = loopback(family).parse().unwrap();
    let recs = run_case(&ns, tag, group, &rules, |ns| {
        let replies = ns.run_in_thread(|| icmp_echo(dst, 0x4242, 7, 3)).unwrap();
        assert_eq!(replies, 3);
    });
    assert_eq!(recs.len(), 6, "3 requests + 3 replies");
    let (k, req, rep) = if family == 2 {
        ("icmp", 8, 0)
    } else {
        ("icmpv6", 128, 129)
    };
    for (i, r) in recs.iter().enumerate() {
        assert_common(r, tag, family, if family == 2 { 1 } else { 58 });
        assert_eq!(r.req_str("src_ip"), loopback(family));
        let want_type = if i % 2 == 0 { req } else { rep };
        assert_eq!(r.req_u64(&format!("{k}.type")), want_type, "{}", r.line);
        assert_eq!(r.req_u64(&format!("{k}.code")), 0);
        assert_eq!(r.req_u64(&format!("{k}.echoid")), 0x4242);
        assert_eq!(r.req_u64(&format!("{k}.echoseq")), 7 + i as u64 / 2);
    }
}

#[test]
fn udp_v4() {
    udp_case("kudp4", 11, 2);
}

#[test]
fn udp_v6() {
    udp_case("kudp6", 12, 10);
}

#[test]
fn tcp_v4() {
    tcp_case("ktcp4", 13, 2);
}

#[test]
fn tcp_v6() {
    tcp_case("ktcp6", 14, 10);
}

#[test]
fn icmp_v4() {
    icmp_case("kicmp4", 15, 2);
}

#[test]
fn icmp_v6() {
    icmp_case("kicmp6", 16, 10);
}

/// Packets that arrive over a veth pair from a second namespace: the input
/// device and the Ethernet header type differ from loopback's.
#[test]
fn udp_over_veth_v4_v6() {
    lab::skip_unless_root!();
    let ns = Netns::with_peer("kveth").unwrap();
    let rules = format!(
        "  iifname \"{}\" udp dport 9999 counter name \"c\" log prefix \"kveth\" group 17 drop",
        netns::VETH_MAIN
    );
    let recs = run_case(&ns, "kveth", 17, &rules, |ns| {
        ns.run_in_peer(|| {
            udp_send(format!("{}:9999", netns::MAIN_V4).parse().unwrap(), 3, 20).unwrap();
            udp_send(format!("[{}]:9999", netns::MAIN_V6).parse().unwrap(), 3, 20).unwrap();
        });
    });
    assert_eq!(recs.len(), 6);
    let ifindex = recs[0].req_u64("oob.ifindex_in");
    for (i, r) in recs.iter().enumerate() {
        let v4 = i < 3;
        assert_eq!(r.req_u64("oob.family"), if v4 { 2 } else { 10 });
        assert_eq!(r.req_str("oob.in"), netns::VETH_MAIN, "{}", r.line);
        assert_eq!(r.req_u64("oob.ifindex_in"), ifindex);
        assert_eq!(r.req_u64("oob.hook"), 1);
        assert_eq!(
            r.req_str("src_ip"),
            if v4 { netns::PEER_V4 } else { netns::PEER_V6 }
        );
        assert_eq!(
            r.req_str("dest_ip"),
            if v4 { netns::MAIN_V4 } else { netns::MAIN_V6 }
        );
        assert_eq!(r.req_u64("dest_port"), 9999);
        assert_eq!(r.req_u64("udp.len"), 28);
        // An Ethernet header: ARPHRD_ETHER, 14 bytes, 6-byte source MAC.
        assert_eq!(r.req_u64("raw.type"), 1, "{}", r.line);
        assert_eq!(r.req_u64("raw.mac_len"), 14);
        assert_eq!(r.req_u64("raw.mac.addrlen"), 6);
    }
}
