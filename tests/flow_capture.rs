//! FLOW on a capture file of real traffic: tcpdump records TCP sessions
//! with data, a UDP request/response, pings, IPv4 and IPv6 on a namespace's
//! loopback; CAPTURE file=… → BASE → FLOW → IP2STR → JSON gives one
//! bidirectional record per session, rulogd exits 0 at the file's end, and
//! every flow's per-direction packets equal Argus's (`argus -r`, `ra`) for
//! the same file and its bytes equal the sum of IP lengths tshark reads.
//! Live on a veth, SIGTERM ends every open flow with the counts sent.

use rulogd_tests::traffic::{icmp_echo, tcp_session};
use rulogd_tests::{self as lab, Netns, Record, TempDir};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CONF: &str = concat!(
    lab::conf_global!(
        "cap1:CAPTURE,base1:BASE,flow1:FLOW,ip2str1:IP2STR,json1:JSON",
        "cap1:CAPTURE,base1:BASE,flow2:FLOW,ip2str2:IP2STR,pf1:PRINTFLOW,emu1:LOGEMU"
    ),
    "\n\
[cap1]
file=\"{PCAP}\"

[emu1]
file=\"{EMU}\"

[flow1]
{FLOWOPTS}

[json1]
file=\"{JSON}\"
"
);

/// Per flow, keyed by (proto, initiator addr, port, responder addr, port):
/// (orig packets, orig bytes, reply packets, reply bytes).
type Flows = BTreeMap<(u8, String, u16, String, u16), (u64, u64, u64, u64)>;

/// One UDP request and its response (`req` + i and `rep` bytes), `n`
/// times, on one socket pair, `gap` apart.
fn udp_exchange(server: SocketAddr, n: usize, gap: Duration, req: usize, rep: usize) {
    let srv = UdpSocket::bind(server).unwrap();
    let any: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0".parse().unwrap()
    } else {
        "[::1]:0".parse().unwrap()
    };
    let cli = UdpSocket::bind(any).unwrap();
    srv.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    cli.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 8192];
    for i in 0..n {
        std::thread::sleep(if i == 0 { Duration::ZERO } else { gap });
        cli.send_to(&vec![b'q'; req + i], server).unwrap();
        let (_, from) = srv.recv_from(&mut buf).unwrap();
        srv.send_to(&vec![b'r'; rep], from).unwrap();
        cli.recv_from(&mut buf).unwrap();
    }
}

fn traffic(ns: &Netns) {
    ns.run_in_thread(|| {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let v6: SocketAddr = "[::1]:8081".parse().unwrap();
        tcp_session(v4, 5000, 70000).unwrap();
        tcp_session(v4, 100, 300).unwrap();
        tcp_session(v6, 20000, 1000).unwrap();
        udp_exchange(
            "127.0.0.1:5353".parse().unwrap(),
            3,
            Duration::ZERO,
            20,
            300,
        );
        udp_exchange("[::1]:5354".parse().unwrap(), 2, Duration::ZERO, 20, 300);
        // Larger than the MTU: fragments, which belong to their flow.
        udp_exchange(
            "127.0.0.1:6000".parse().unwrap(),
            2,
            Duration::ZERO,
            3000,
            4000,
        );
        udp_exchange("[::1]:6001".parse().unwrap(), 2, Duration::ZERO, 3000, 4000);
        assert_eq!(icmp_echo("127.0.0.1".parse().unwrap(), 7, 1, 3).unwrap(), 3);
        assert_eq!(icmp_echo("::1".parse().unwrap(), 8, 1, 2).unwrap(), 2);
        // Last, 2 s long: the replayed clock passes the short timeouts of
        // the second run on every flow before it.
        let gap = Duration::from_millis(500);
        udp_exchange("127.0.0.1:5355".parse().unwrap(), 5, gap, 20, 300);
    });
}

fn run_rulogd(
    dir: &Path,
    tag: &str,
    pcap: &Path,
    flow_opts: &str,
) -> (Option<i32>, Vec<Record>, String) {
    let vars = [
        ("FLOWOPTS", flow_opts.to_string()),
        ("EMU", lab::path_str(&dir.join(format!("{tag}.emu")))),
    ];
    let f = rulogd_tests::daemon::run_capture(None, dir, tag, CONF, pcap, &vars);
    (f.code, f.records, f.log)
}

fn rulogd_flows(recs: &[Record]) -> Flows {
    let mut m = Flows::new();
    for r in recs {
        let proto = r.req_u64("orig.ip.protocol") as u8;
        let ports = |k: &str| r.u64(k).unwrap_or(0) as u16;
        let key = (
            proto,
            r.req_str("src_ip").to_string(),
            ports("orig.l4.sport"),
            r.req_str("dest_ip").to_string(),
            ports("orig.l4.dport"),
        );
        let e = m.entry(key).or_default();
        e.0 += r.req_u64("orig.raw.pktcount");
        e.1 += r.req_u64("orig.raw.pktlen");
        e.2 += r.req_u64("reply.raw.pktcount");
        e.3 += r.req_u64("reply.raw.pktlen");
    }
    m
}

/// Argus's flows of the same file: packets per direction (bytes left 0;
/// Argus counts link headers, so bytes come from tshark instead).
fn argus_flows(dir: &Path, pcap: &Path) -> Flows {
    lab::argus::flows(dir, pcap)
        .into_iter()
        .map(|(k, (s, d))| (k, (s, 0, d, 0)))
        .collect()
}

/// tshark's IP lengths summed per direction of each rulogd flow.
/// ICMP packets are keyed by whether they are echo replies, so the two
/// directions stay apart when both ends have one address.
type TsKey = (String, u16, String, u16, u8, bool);

fn tshark_bytes(pcap: &Path) -> BTreeMap<TsKey, u64> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=f"])
        .args([
            "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst",
        ])
        .args([
            "-e",
            "tcp.srcport",
            "-e",
            "udp.srcport",
            "-e",
            "tcp.dstport",
        ])
        .args(["-e", "udp.dstport", "-e", "ip.len", "-e", "ipv6.plen"])
        .args(["-e", "ip.proto", "-e", "ipv6.nxt"])
        .args(["-e", "icmp.type", "-e", "icmpv6.type"])
        .output()
        .expect("tshark");
    assert!(out.status.success());
    let mut m = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = l.split('|').collect();
        let pick = |a: &str, b: &str| {
            if a.is_empty() {
                b.to_string()
            } else {
                a.to_string()
            }
        };
        let port = |a: &str, b: &str| pick(a, b).parse::<u16>().unwrap_or(0);
        let len = if f[8].is_empty() {
            f[9].parse::<u64>().unwrap() + 40
        } else {
            f[8].parse::<u64>().unwrap()
        };
        let proto = pick(f[10], f[11]).parse::<u8>().unwrap_or(0);
        let reply = matches!(pick(f[12], f[13]).as_str(), "0" | "129");
        let key = (
            pick(f[0], f[1]),
            port(f[4], f[5]),
            pick(f[2], f[3]),
            port(f[6], f[7]),
            proto,
            reply,
        );
        *m.entry(key).or_default() += len;
    }
    m
}

/// The servers' ports of the exchanges that are fragmented.
const FRAG_PORTS: [u16; 2] = [6000, 6001];

/// Packets and IP bytes of a request of `req` and a reply of `rep` UDP
/// payload bytes at MTU 1280: ((request packets, bytes), (reply …)).
fn fragments(v6: bool, req: usize, rep: usize) -> ((u64, u64), (u64, u64)) {
    // Each fragment's header: IPv4's 20 bytes; IPv6's 40 plus 8 of the
    // fragment header. Fragment payloads are multiples of 8.
    let hdr = if v6 { 48 } else { 20 };
    let per = (1280 - hdr) / 8 * 8;
    let one = |n: usize| {
        let udp = 8 + n;
        let frags = udp.div_ceil(per);
        (frags as u64, (udp + hdr * frags) as u64)
    };
    (one(req), one(rep))
}

#[test]
fn flows_of_a_capture_file_match_argus_and_tshark() {
    let (ns, dir) = lab::netns_or_skip!("flowcap");
    let d = dir.path();
    let pcap = d.join("lo.pcap");
    // IPv6's minimum MTU, so the large UDP datagrams are fragmented.
    let st = ns
        .command("ip")
        .args(["link", "set", "lo", "mtu", "1280"])
        .status()
        .unwrap();
    assert!(st.success());
    let c = lab::capture::tcpdump_lo(&ns, &pcap, d);
    traffic(&ns);
    lab::capture::stop(c);

    let (code, recs, log) = run_rulogd(d, "defaults", &pcap, "");
    assert_eq!(
        code,
        Some(0),
        "rulogd did not exit 0 at the file's end: {log}"
    );
    assert!(log.contains("every input has finished"), "{log}");
    for r in &recs {
        assert_eq!(r.req_str("flow.type"), "end", "{}", r.line);
        assert_eq!(r.req_str("flow.end_reason"), "forced", "{}", r.line);
    }
    let ours = rulogd_flows(&recs);
    assert_eq!(ours.len(), recs.len(), "one record per flow: {ours:#?}");
    // PRINTFLOW takes FLOW's records as NFCT's: one DESTROY line a flow.
    let emu = std::fs::read_to_string(d.join("defaults.emu")).unwrap();
    assert_eq!(emu.lines().count(), recs.len(), "{emu}");
    for l in emu.lines() {
        assert!(
            lab::after_syslog_head(l).starts_with("[DESTROY] ORIG: SRC="),
            "{l}"
        );
    }
    // 3 TCP sessions, 5 UDP exchanges (2 fragmented), 2 pings.
    let count = |p: u8| ours.keys().filter(|k| k.0 == p).count();
    assert_eq!(
        (count(6), count(17), count(1), count(58)),
        (3, 5, 1, 1),
        "{ours:#?}"
    );
    // Every session was initiated by the client side, by SYN or first packet.
    for r in &recs {
        assert_eq!(r.u64("flow.guessed"), Some(0), "{}", r.line);
    }
    let tcp_dports: Vec<u16> = ours.keys().filter(|k| k.0 == 6).map(|k| k.4).collect();
    assert!(
        tcp_dports.iter().all(|p| *p == 8080 || *p == 8081),
        "{ours:#?}"
    );

    // Packets per direction against Argus.
    let argus = argus_flows(d, &pcap);
    let strip = |m: &Flows| -> BTreeMap<_, (u64, u64)> {
        m.iter().map(|(k, v)| (k.clone(), (v.0, v.2))).collect()
    };
    let mut argus = strip(&argus);
    // Management (MAR) records are no flows.
    argus.retain(|k, _| k.0 != 0);
    // Fragments: on loopback Argus gives later IPv4 fragments of a request
    // to the reply side, and takes the payload of later IPv6 fragments for
    // UDP ports (flows that do not exist). Checked against the sizes sent
    // below instead; every other flow is compared.
    let frag_port = |k: &(u8, String, u16, String, u16)| FRAG_PORTS.contains(&k.4);
    argus.retain(|k, _| {
        let rev = (k.0, k.3.clone(), k.4, k.1.clone(), k.2);
        let known = ours.contains_key(k) || ours.contains_key(&rev);
        let v6_udp = k.0 == 17 && k.1 == "::1";
        !frag_port(k) && !frag_port(&rev) && (known || !v6_udp)
    });
    // Argus does not pair the two directions of an IPv6 flow whose ends
    // have one address (::1 to ::1): it reports each direction as a flow of
    // its own, and both directions of a ping as one. Paired up here.
    for k in ours.keys() {
        let rev = (k.0, k.3.clone(), k.4, k.1.clone(), k.2);
        if rev != *k && argus.get(k).is_some_and(|v| v.1 == 0) {
            if let Some(r) = argus.remove(&rev) {
                argus.get_mut(k).unwrap().1 = r.0;
            }
        }
    }
    let mut ours_pkts = strip(&ours);
    ours_pkts.retain(|k, _| !frag_port(k));
    for (k, v) in ours_pkts.iter_mut() {
        if k.0 == 58 && k.1 == k.3 && argus.get(k) == Some(&(v.0 + v.1, 0)) {
            *v = (v.0 + v.1, 0);
        }
    }
    assert_eq!(ours_pkts, argus, "packets: rulogd vs argus");

    // Bytes per direction against tshark's IP lengths.
    let ts = tshark_bytes(&pcap);
    for ((proto, sa, sp, da, dp), v) in &ours {
        if FRAG_PORTS.contains(dp) {
            let v6 = sa.contains(':');
            let (a0, b0) = fragments(v6, 3000, 4000);
            let (a1, b1) = fragments(v6, 3001, 4000);
            let got = (v.0, v.1, v.2, v.3);
            assert_eq!(
                got,
                (a0.0 + a1.0, a0.1 + a1.1, b0.0 + b1.0, b0.1 + b1.1),
                "fragments of {sa}:{sp} -> {da}:{dp}"
            );
            continue;
        }
        let icmp = *proto == 1 || *proto == 58;
        let fwd = ts
            .get(&(sa.clone(), *sp, da.clone(), *dp, *proto, false))
            .copied()
            .unwrap_or(0);
        let rev = ts
            .get(&(da.clone(), *dp, sa.clone(), *sp, *proto, icmp))
            .copied()
            .unwrap_or(0);
        assert_eq!(
            (v.1, v.3),
            (fwd, rev),
            "bytes of {proto} {sa}:{sp} -> {da}:{dp}"
        );
    }

    // The same file with short timeouts: the packets' own times end every
    // flow before the last by its timer, the last sends updates, and the
    // records of each flow sum to the totals of the first run.
    let opts = "active_timeout=1\nudp_timeout=1\nicmp_timeout=1\ntcp_linger=1";
    let (code, recs2, log) = run_rulogd(d, "short", &pcap, opts);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(rulogd_flows(&recs2), ours, "totals with updates");
    let mut by_id: BTreeMap<u64, Vec<&Record>> = BTreeMap::new();
    for r in &recs2 {
        by_id.entry(r.req_u64("flow.id")).or_default().push(r);
    }
    assert_eq!(by_id.len(), ours.len());
    let mut paced_updates = 0;
    for rs in by_id.values() {
        let seqs: Vec<u64> = rs.iter().map(|r| r.req_u64("flow.seq")).collect();
        assert_eq!(seqs, (1..=rs.len() as u64).collect::<Vec<_>>());
        let last = rs.last().unwrap();
        assert_eq!(last.req_str("flow.type"), "end", "{}", last.line);
        let words: Vec<(&str, &str)> = rs
            .iter()
            .map(|r| (r.req_str("flow.type"), r.req_str("flow.end_reason")))
            .collect();
        let want_end = match (last.req_u64("orig.ip.protocol"), last.u64("orig.l4.dport")) {
            (6, _) => "fin",
            (17, Some(5355)) => {
                paced_updates = rs.len() - 1;
                "forced"
            }
            _ => "idle",
        };
        assert_eq!(words.last().unwrap().1, want_end, "{}", last.line);
        for w in &words[..words.len() - 1] {
            assert_eq!(*w, ("update", "active"), "{}", last.line);
        }
    }
    assert!(paced_updates >= 1, "no update record: {recs2:#?}");
}

const LIVE_CONF: &str = concat!(
    lab::conf_global!("cap1:CAPTURE,base1:BASE,flow1:FLOW,ip2str1:IP2STR,json1:JSON"),
    "\n\
[cap1]
interface=\"rlv0\"
filter=\"tcp port 8080 or udp port 9999 or icmp\"

[json1]
file=\"{JSON}\"
sync=1
"
);

/// Live on a veth, traffic from a peer namespace: one record per session
/// when SIGTERM ends the open flows (`forced`), with the counts sent.
#[test]
fn live_flows_end_forced_at_sigterm_with_the_counts_sent() {
    lab::skip_unless_root!();
    use rulogd_tests::netns::{MAIN_V4, MAIN_V6, PEER_V4, PEER_V6};
    use rulogd_tests::traffic::{tcp_client, tcp_listen, tcp_serve_once};
    let ns = Netns::with_peer("flowlive").unwrap();
    let dir = TempDir::new("flowlive");
    let json = dir.path().join("live.json");
    let conf = lab::fill(LIVE_CONF, &[("JSON", lab::path_str(&json))]);
    let d = rulogd_tests::Daemon::rulogd(&ns, dir.path(), &conf, &[], &[&json]);
    let tcp_addr: SocketAddr = format!("{MAIN_V4}:8080").parse().unwrap();
    let (listener, u4, u6) = ns.run_in_thread(|| {
        (
            tcp_listen(tcp_addr).unwrap(),
            UdpSocket::bind(format!("{MAIN_V4}:9999")).unwrap(),
            UdpSocket::bind(format!("[{MAIN_V6}]:9999")).unwrap(),
        )
    });
    let server = tcp_serve_once(listener, 70000);
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for s in [&u4, &u4, &u4, &u6, &u6] {
            let (_, from) = s.recv_from(&mut buf).unwrap();
            s.send_to(&[b'r'; 50], from).unwrap();
        }
    });
    ns.run_in_peer(|| {
        tcp_client(tcp_addr, 5000).unwrap();
        let v4 = UdpSocket::bind(format!("{PEER_V4}:0")).unwrap();
        let v6 = UdpSocket::bind(format!("[{PEER_V6}]:0")).unwrap();
        let mut buf = [0u8; 2048];
        for (s, dst) in [(&v4, MAIN_V4), (&v4, MAIN_V4), (&v4, MAIN_V4)] {
            s.send_to(&[b'q'; 100], format!("{dst}:9999")).unwrap();
            s.recv_from(&mut buf).unwrap();
        }
        for _ in 0..2 {
            v6.send_to(&[b'q'; 100], format!("[{MAIN_V6}]:9999"))
                .unwrap();
            v6.recv_from(&mut buf).unwrap();
        }
        assert_eq!(icmp_echo(MAIN_V4.parse().unwrap(), 9, 1, 5).unwrap(), 5);
    });
    assert_eq!(server.join().unwrap().unwrap(), 5000);
    echo.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // No flow has timed out yet: SIGTERM ends them all.
    assert_eq!(lab::count_lines(&json), 0);
    d.stop();
    let recs = lab::read_records(&json);
    let flows = rulogd_flows(&recs);
    assert_eq!(
        recs.len(),
        4,
        "TCP, UDP over IPv4 and IPv6, ping: {flows:#?}"
    );
    for r in &recs {
        assert_eq!(r.req_str("flow.end_reason"), "forced", "{}", r.line);
        assert_eq!(r.req_u64("flow.guessed"), 0, "{}", r.line);
    }
    let get = |proto: u8, src: &str| {
        let (k, v) = flows
            .iter()
            .find(|(k, _)| k.0 == proto && k.1 == src)
            .unwrap_or_else(|| panic!("no flow {proto} from {src}: {flows:#?}"));
        (k.clone(), *v)
    };
    // UDP: IP header + 8 + payload, each way.
    assert_eq!(get(17, PEER_V4).1, (3, 3 * 128, 3, 3 * 78));
    assert_eq!(get(17, PEER_V6).1, (2, 2 * 148, 2, 2 * 98));
    let (k, ping) = get(1, PEER_V4);
    assert_eq!(k.3, MAIN_V4);
    assert_eq!((ping.0, ping.2), (5, 5));
    assert_eq!(ping.1, ping.3, "echo replies are as long as the requests");
    let (k, tcp) = get(6, PEER_V4);
    assert_eq!((k.3.as_str(), k.4), (MAIN_V4, 8080));
    // Data plus at least 20 + 20 bytes of headers per packet.
    assert!(
        tcp.1 >= 5000 + 40 * tcp.0 && tcp.3 >= 70000 + 40 * tcp.2,
        "{tcp:?}"
    );
    let log = std::fs::read_to_string(dir.path().join("rulogd.log")).unwrap();
    let exit = log
        .lines()
        .find(|l| l.contains("exit: flow1 (FLOW):") || l.contains("(FLOW)"))
        .unwrap_or_else(|| panic!("no FLOW counters in the log: {log}"));
    assert!(exit.contains("ended_forced=4"), "{exit}");
}
