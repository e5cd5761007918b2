//! DIRECTION on conntrack flows: NFCT → DIRECTION → IP2STR → JSON in a
//! namespace joined to a peer by a veth; flows the namespace starts, flows
//! the peer starts and loopback flows get inbound, outbound, internal and
//! external by their original tuple, in IPv4 and IPv6.
//!
//! Run: `cargo build -p rulogd && cargo test -p rulogd-tests --test
//! direction_nfct` (root needed).

use rulogd_tests::netns::{MAIN_V4, MAIN_V6, PEER_V4, PEER_V6};
use rulogd_tests::traffic::udp_send;
use rulogd_tests::{self as lab, Daemon};
use std::net::SocketAddr;
use std::time::Duration;

const CONF: &str = concat!(
    lab::conf_global!("ct1:NFCT,dir1:DIRECTION,ip2str1:IP2STR,json1:JSON"),
    "\n\
[ct1]
hash_enable=0

[dir1]
home_net=\"{HOME}\"

[json1]
file=\"{FILE}\"
sync=1
"
);

fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

#[test]
fn conntrack_flows_get_their_direction_by_home_net() {
    let (ns, dir) = lab::netns_or_skip!(peer "dirct");
    // A rule that needs conntrack makes the namespace track its traffic.
    ns.nft("table inet t {\n chain out {\n  type filter hook output priority 0;\n  ct state new counter\n }\n}\n")
        .unwrap();
    let json = dir.path().join("flows.json");
    // The namespace's own addresses, and IPv4 loopback (IPv6's stays out).
    let home = format!("{MAIN_V4}/32, {MAIN_V6}/128 127.0.0.0/8");
    let conf = lab::fill(CONF, &[("HOME", home), ("FILE", lab::path_str(&json))]);
    let d = Daemon::rulogd(&ns, dir.path(), &conf, &[], &[&json]);
    std::thread::sleep(Duration::from_millis(300));
    // (destination, expected direction), one destination port each.
    let from_main = [
        (sa(PEER_V4, 7301), "outbound"),
        (sa(PEER_V6, 7302), "outbound"),
        (sa("127.0.0.1", 7303), "internal"),
        (sa("::1", 7304), "external"),
    ];
    let from_peer = [
        (sa(MAIN_V4, 7305), "inbound"),
        (sa(MAIN_V6, 7306), "inbound"),
    ];
    ns.run_in_thread(|| {
        for (to, _) in from_main {
            udp_send(to, 2, 32).unwrap();
        }
    });
    ns.run_in_peer(|| {
        for (to, _) in from_peer {
            udp_send(to, 2, 32).unwrap();
        }
    });
    let want: Vec<(u64, &str)> = from_main
        .iter()
        .chain(&from_peer)
        .map(|(a, w)| (a.port() as u64, *w))
        .collect();
    let ok = lab::wait_until(Duration::from_secs(10), || {
        let recs = lab::json::read_records_lenient(&json).0;
        want.iter().all(|(p, _)| {
            recs.iter()
                .any(|r| r.u64("orig.l4.dport").or(r.u64("dest_port")) == Some(*p))
        })
    });
    d.stop();
    let recs = lab::read_records(&json);
    assert!(ok, "a NEW event for every flow; got {} records", recs.len());
    for (port, w) in &want {
        let mine: Vec<_> = recs
            .iter()
            .filter(|r| r.u64("orig.l4.dport").or(r.u64("dest_port")) == Some(*port))
            .collect();
        assert!(!mine.is_empty(), "port {port}");
        for r in mine {
            assert_eq!(r.str("flow.direction"), Some(*w), "{}", r.line);
        }
    }
    // Anything else the kernel tracked still has a direction.
    for r in &recs {
        assert!(r.str("flow.direction").is_some(), "{}", r.line);
    }
}
