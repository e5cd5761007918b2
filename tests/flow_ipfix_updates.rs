//! Active-timeout updates over IPFIX: a UDP conversation of 4 s on a
//! namespace's loopback is captured with tcpdump; rulogd replays the file
//! through CAPTURE → BASE → FLOW (active_timeout=1) into JSON and into
//! IPFIX over UDP to nfcapd (Debian's nfdump). The flow must reach nfcapd
//! as several records (updates, then the end), each with the delta counts
//! of the matching JSON record, and their sums must equal what was sent.
//!
//! Run: `cargo build -p rulogd && cargo test -p rulogd-tests --test
//! flow_ipfix_updates` (root needed).

use rulogd_tests as lab;
use rulogd_tests::nfcapd::{num, Nfcapd};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

const CONF: &str = concat!(
    lab::conf_global!(
        "cap1:CAPTURE,base1:BASE,flow1:FLOW,ip2str1:IP2STR,json1:JSON",
        "cap1:CAPTURE,base1:BASE,flow1:FLOW,bi:IPFIX"
    ),
    "\n\
[cap1]
file=\"{PCAP}\"

[flow1]
active_timeout=1

[json1]
file=\"{JSON}\"

[bi]
oid=5
host=\"127.0.0.1\"
port={PORT}
proto=\"udp\"
"
);

/// Requests and responses, 500 ms apart.
const EXCHANGES: usize = 9;
const REPLY: usize = 300;

fn conversation(server: SocketAddr) {
    let srv = UdpSocket::bind(server).unwrap();
    let cli = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&srv, &cli] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    let mut buf = [0u8; 2048];
    for i in 0..EXCHANGES {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        cli.send_to(&vec![b'q'; 20 + i], server).unwrap();
        let (_, from) = srv.recv_from(&mut buf).unwrap();
        srv.send_to(&[b'r'; REPLY], from).unwrap();
        cli.recv_from(&mut buf).unwrap();
    }
}

#[test]
fn a_long_flow_reaches_nfcapd_as_updates_whose_deltas_sum_to_its_totals() {
    let (ns, dir) = lab::netns_or_skip!("flowupd");
    let d = dir.path();
    let pcap = d.join("lo.pcap");
    let c = lab::capture::tcpdump_lo(&ns, &pcap, d);
    let server: SocketAddr = "127.0.0.1:5999".parse().unwrap();
    ns.run_in_thread(|| conversation(server));
    lab::capture::stop(c);

    let port = lab::free_port();
    let col = Nfcapd::start(&ns, port, &d.join("nfcapd"), None);
    // In the namespace, so the export reaches its nfcapd.
    let vars = [("PORT", port.to_string())];
    let f = rulogd_tests::daemon::run_capture(Some(&ns), d, "rulogd", CONF, &pcap, &vars);
    assert_eq!(f.code, Some(0), "{}", f.log);
    std::thread::sleep(Duration::from_millis(300));
    let (rows, stat) = col.stop();

    let recs: Vec<_> = f
        .records
        .into_iter()
        .filter(|r| r.u64("orig.l4.dport") == Some(5999))
        .collect();
    let kinds: Vec<&str> = recs.iter().map(|r| r.req_str("flow.type")).collect();
    assert!(recs.len() >= 3, "updates and an end: {kinds:?}");
    assert_eq!(kinds.last(), Some(&"end"), "{kinds:?}");
    assert!(
        kinds[..kinds.len() - 1].iter().all(|k| *k == "update"),
        "{kinds:?}"
    );

    let ours: Vec<[u64; 4]> = recs
        .iter()
        .map(|r| {
            [
                r.req_u64("orig.raw.pktcount"),
                r.req_u64("orig.raw.pktlen"),
                r.req_u64("reply.raw.pktcount"),
                r.req_u64("reply.raw.pktlen"),
            ]
        })
        .collect();
    let mut theirs: Vec<[u64; 4]> = rows
        .iter()
        .filter(|r| r["pr"] == "UDP" && r["dp"] == "5999")
        .map(|r| {
            [
                num(r, "ipkt"),
                num(r, "ibyt"),
                num(r, "opkt"),
                num(r, "obyt"),
            ]
        })
        .collect();
    assert_eq!(
        theirs.len(),
        ours.len(),
        "one IPFIX record per JSON record\n{rows:#?}\n{stat}"
    );
    let mut sorted = ours.clone();
    sorted.sort();
    theirs.sort();
    assert_eq!(theirs, sorted, "the delta counts of each record");

    // The deltas add up to the conversation: IP length = payload + 28.
    let total = ours.iter().fold([0u64; 4], |mut a, r| {
        for i in 0..4 {
            a[i] += r[i];
        }
        a
    });
    let n = EXCHANGES as u64;
    let req_bytes: u64 = (0..n).map(|i| 20 + i + 28).sum();
    assert_eq!(total, [n, req_bytes, n, n * (REPLY as u64 + 28)]);
    assert_eq!(
        lab::nfcapd::stat_value(&stat, "Sequence failures"),
        Some(0),
        "{stat}"
    );
}
