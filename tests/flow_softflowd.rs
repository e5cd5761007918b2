//! FLOW against softflowd on the same capture file: tcpdump records TCP
//! sessions with data, UDP requests and responses and pings (IPv4 and
//! IPv6) on a veth between two namespaces; `softflowd -r` exports the file
//! as IPFIX to nfcapd (Debian's softflowd and nfdump), rulogd reads it
//! with CAPTURE → BASE → FLOW → IP2STR → JSON. Totals of packets and bytes
//! over all flows must be equal, and every TCP and UDP flow's direction
//! must be one softflowd record with the same packets and bytes.
//!
//! Deliberate differences (docs/COMPATIBILITY.md): softflowd exports one
//! record per direction (NetFlow style) where FLOW has one bidirectional
//! record; it keys ICMP by type and code, so an echo request and its reply
//! are two flows to it and one (by echo identifier) to FLOW; and `-r`
//! expires flows only at the file's end or when the table is full.
//!
//! Run: `cargo build -p rulogd && cargo test -p rulogd-tests --test
//! flow_softflowd` (root needed).

use rulogd_tests::netns::{PEER_V4, PEER_V6, VETH_MAIN};
use rulogd_tests::nfcapd::{self, num, Nfcapd, Row};
use rulogd_tests::traffic::{icmp_echo, tcp_client, tcp_listen, tcp_serve_once};
use rulogd_tests::{self as lab, Netns, Record};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

const CONF: &str = concat!(
    lab::conf_global!("cap1:CAPTURE,base1:BASE,flow1:FLOW,ip2str1:IP2STR,json1:JSON"),
    "\n\
[cap1]
file=\"{PCAP}\"

[json1]
file=\"{JSON}\"
"
);

fn addr(ip: &str, port: u16) -> SocketAddr {
    if ip.contains(':') {
        format!("[{ip}]:{port}").parse().unwrap()
    } else {
        format!("{ip}:{port}").parse().unwrap()
    }
}

/// TCP sessions and UDP exchanges from this namespace to the peer's
/// servers, and pings.
fn traffic(ns: &Netns) {
    for (ip, port, up, down) in [
        (PEER_V4, 8080, 5000, 70000),
        (PEER_V4, 8080, 100, 300),
        (PEER_V6, 8081, 20000, 1000),
    ] {
        let a = addr(ip, port);
        let l = ns.run_in_peer(|| tcp_listen(a)).unwrap();
        let served = tcp_serve_once(l, down);
        let out = ns.run_in_thread(|| tcp_client(a, up)).unwrap();
        assert_eq!(out.received, down);
        assert_eq!(served.join().unwrap().unwrap(), up);
    }
    for (ip, port, n) in [(PEER_V4, 5353, 3), (PEER_V6, 5354, 2)] {
        let a = addr(ip, port);
        let any = if ip.contains(':') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let srv = ns.run_in_peer(|| UdpSocket::bind(a)).unwrap();
        let cli = ns.run_in_thread(|| UdpSocket::bind(any)).unwrap();
        for s in [&srv, &cli] {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        }
        let mut buf = [0u8; 2048];
        for i in 0..n {
            cli.send_to(&vec![b'q'; 20 + i], a).unwrap();
            let (_, from) = srv.recv_from(&mut buf).unwrap();
            srv.send_to(&[b'r'; 300], from).unwrap();
            cli.recv_from(&mut buf).unwrap();
        }
    }
    let v4 = PEER_V4.parse().unwrap();
    let v6 = PEER_V6.parse().unwrap();
    assert_eq!(ns.run_in_thread(|| icmp_echo(v4, 7, 1, 3)).unwrap(), 3);
    assert_eq!(ns.run_in_thread(|| icmp_echo(v6, 8, 1, 2)).unwrap(), 2);
}

/// softflowd's records of `pcap`, as nfdump lists them.
fn softflowd(ns: &Netns, dir: &Path, pcap: &Path) -> Vec<Row> {
    let port = lab::free_port();
    let col = Nfcapd::start(ns, port, &dir.join("nfcapd"), None);
    let out = ns
        .command("softflowd")
        .arg("-r")
        .arg(pcap)
        .args([
            "-n",
            &format!("127.0.0.1:{port}"),
            "-v",
            "10",
            "-A",
            "milli",
        ])
        .arg("-p")
        .arg(dir.join("softflowd.pid"))
        .output()
        .expect("softflowd (Debian package softflowd)");
    assert!(out.status.success(), "softflowd: {out:?}");
    std::thread::sleep(Duration::from_millis(300));
    col.stop().0
}

/// One direction of a flow: (protocol name as nfdump prints it, source,
/// source port, destination, destination port).
type DirKey = (String, String, u64, String, u64);

/// rulogd's flows split into directions: key → (packets, bytes).
fn rulogd_dirs(recs: &[Record]) -> BTreeMap<DirKey, (u64, u64)> {
    let mut m = BTreeMap::new();
    for r in recs {
        let p = r.req_u64("orig.ip.protocol");
        if p != 6 && p != 17 {
            continue;
        }
        let (sa, da) = (r.req_str("src_ip"), r.req_str("dest_ip"));
        let (sp, dp) = (r.req_u64("orig.l4.sport"), r.req_u64("orig.l4.dport"));
        let pr = nfcapd::proto_name(p).to_string();
        for (k, pk, by) in [
            (
                (pr.clone(), sa, sp, da, dp),
                "orig.raw.pktcount",
                "orig.raw.pktlen",
            ),
            (
                (pr.clone(), da, dp, sa, sp),
                "reply.raw.pktcount",
                "reply.raw.pktlen",
            ),
        ] {
            if r.req_u64(pk) > 0 {
                let key = (k.0, k.1.to_string(), k.2, k.3.to_string(), k.4);
                m.insert(key, (r.req_u64(pk), r.req_u64(by)));
            }
        }
    }
    m
}

#[test]
fn flow_totals_equal_softflowds_on_one_capture() {
    let (ns, dir) = lab::netns_or_skip!(peer "flowsf");
    let d = dir.path();
    let pcap = d.join("veth.pcap");
    let mut args = vec!["-i", VETH_MAIN];
    args.extend(lab::capture::TCPDUMP_ARGS);
    let p = lab::path_str(&pcap);
    args.extend(["-w", &p]);
    let c = lab::capture::start(&ns, "tcpdump", &args, d);
    traffic(&ns);
    lab::capture::stop(c);

    let f = rulogd_tests::daemon::run_capture(None, d, "rulogd", CONF, &pcap, &[]);
    assert_eq!(f.code, Some(0), "{}", f.log);
    let recs = f.records;
    let rows = softflowd(&ns, d, &pcap);
    assert!(!rows.is_empty(), "softflowd exported nothing");

    // Totals over every flow of the file.
    let sum =
        |k1: &str, k2: &str| -> u64 { recs.iter().map(|r| r.req_u64(k1) + r.req_u64(k2)).sum() };
    let ours = (
        sum("orig.raw.pktcount", "reply.raw.pktcount"),
        sum("orig.raw.pktlen", "reply.raw.pktlen"),
    );
    let theirs = (
        rows.iter().map(|r| num(r, "ipkt")).sum::<u64>(),
        rows.iter().map(|r| num(r, "ibyt")).sum::<u64>(),
    );
    assert_eq!(
        ours, theirs,
        "packets and bytes, rulogd vs softflowd\n{rows:#?}"
    );

    // TCP and UDP: one softflowd record per direction, the same counts.
    let dirs = rulogd_dirs(&recs);
    let mut sf = BTreeMap::new();
    for r in rows.iter().filter(|r| r["pr"] == "TCP" || r["pr"] == "UDP") {
        let k = (
            r["pr"].clone(),
            r["sa"].clone(),
            num(r, "sp"),
            r["da"].clone(),
            num(r, "dp"),
        );
        assert!(
            sf.insert(k, (num(r, "ipkt"), num(r, "ibyt"))).is_none(),
            "{r:?}"
        );
    }
    assert_eq!(dirs, sf, "per direction, rulogd vs softflowd");
    // 3 TCP sessions and 2 UDP exchanges, each both ways.
    assert_eq!(dirs.len(), 10, "{dirs:#?}");
    let flows = |p: u64| {
        recs.iter()
            .filter(|r| r.req_u64("orig.ip.protocol") == p)
            .count()
    };
    assert_eq!((flows(6), flows(17)), (3, 2));

    // ICMP echo: one flow per ping to FLOW, one per direction to softflowd.
    // nfdump shows ICMP type * 256 + code as the destination port.
    for (pr, src, dst, n, echo) in [
        ("ICMP", "10.201.0.1", PEER_V4, 3, "2048"),
        ("ICMP6", "fd00:201::1", PEER_V6, 2, "32768"),
    ] {
        let req = rows
            .iter()
            .find(|r| r["pr"] == pr && r["sa"] == src && r["da"] == dst && r["dp"] == echo)
            .unwrap_or_else(|| panic!("{pr} echo requests in {rows:#?}"));
        assert_eq!(num(req, "ipkt"), n, "{req:?}");
        let ping = recs
            .iter()
            .find(|r| {
                r.str("src_ip") == Some(src)
                    && r.str("dest_ip") == Some(dst)
                    && r.u64("orig.ip.protocol") == Some(if pr == "ICMP" { 1 } else { 58 })
                    && r.req_u64("reply.raw.pktcount") > 0
            })
            .unwrap_or_else(|| panic!("the {pr} ping in rulogd's records"));
        assert_eq!(
            (
                ping.req_u64("orig.raw.pktcount"),
                ping.req_u64("reply.raw.pktcount")
            ),
            (n, n),
            "{}",
            ping.line
        );
    }
}
