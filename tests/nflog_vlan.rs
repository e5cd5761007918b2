//! NFLOG's VLAN id from the kernel: a bridge in a namespace, frames tagged
//! with VLAN 10 sent on the peer's veth through a raw socket (this kernel
//! has no VLAN devices), an nft bridge rule logging to an NFLOG group. The
//! kernel takes the tag out of the frame on receive and sends it as
//! NFULA_VLAN; NFLOG (with vlan=1) gives it as `oob.vlan`, and FLOW keys its flows by
//! it. Untagged frames on the same port have no `oob.vlan`.
//!
//! Run: `cargo build -p rulogd && cargo test -p rulogd-tests --test
//! nflog_vlan` (root needed).

use rulogd_tests::netns::{VETH_MAIN, VETH_PEER};
use rulogd_tests::pcapgen::{Pcap, L4};
use rulogd_tests::{self as lab, Daemon, Netns};
use std::time::Duration;

/// Sends each frame as it is on `dev` (an AF_PACKET raw socket).
fn send_frames(dev: &str, frames: &[Vec<u8>]) {
    let name = std::ffi::CString::new(dev).unwrap();
    // SAFETY: plain socket calls on a sockaddr_ll that lives across them.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        assert!(ifindex > 0, "no {dev}");
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "AF_PACKET socket");
        let mut sa: libc::sockaddr_ll = std::mem::zeroed();
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = ifindex as i32;
        sa.sll_halen = 6;
        for f in frames {
            let n = libc::sendto(
                fd,
                f.as_ptr().cast(),
                f.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(
                n,
                f.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
        libc::close(fd);
    }
}

const CONF: &str = concat!(
    lab::conf_global!(
        "log1:NFLOG,base1:BASE,ip2str1:IP2STR,json1:JSON",
        "log1:NFLOG,base1:BASE,flow1:FLOW,ip2str2:IP2STR,json2:JSON"
    ),
    "\n\
[log1]
group=78
vlan=1

[json1]
file=\"{PKTS}\"
sync=1

[json2]
file=\"{FLOWS}\"
sync=1
"
);

fn run(ns: &Netns, peer: bool, args: &[&str]) {
    let mut c = if peer {
        ns.peer_command("ip")
    } else {
        ns.command("ip")
    };
    let out = c.args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

#[test]
fn bridged_tagged_frames_carry_their_vlan_id_into_packets_and_flows() {
    let (ns, dir) = lab::netns_or_skip!(peer "nflvlan");
    // The main side's veth becomes a bridge port (its address stays, unused).
    run(&ns, false, &["link", "add", "br0", "type", "bridge"]);
    run(&ns, false, &["link", "set", VETH_MAIN, "master", "br0"]);
    run(&ns, false, &["link", "set", "br0", "up"]);
    ns.nft("table bridge t {\n chain pre {\n  type filter hook prerouting priority 0;\n  udp dport { 7801, 7802 } log group 78\n }\n}\n")
        .unwrap();
    let (pkts, flows) = (dir.path().join("pkts.json"), dir.path().join("flows.json"));
    let conf = lab::fill(
        CONF,
        &[
            ("PKTS", lab::path_str(&pkts)),
            ("FLOWS", lab::path_str(&flows)),
        ],
    );
    let d = Daemon::rulogd(&ns, dir.path(), &conf, &[78], &[&pkts, &flows]);
    let mut p = Pcap::new(65535);
    let (c, s) = (
        ("10.210.0.2".parse().unwrap(), 5000),
        ("10.210.0.1".parse().unwrap(), 7801),
    );
    let mut frames = Vec::new();
    for _ in 0..3 {
        frames.extend(
            p.frames(&[10], c, s, L4::Udp { len: 20 }, 0)
                .into_iter()
                .map(|f| f.0),
        );
    }
    let s2 = ("10.210.0.1".parse().unwrap(), 7802);
    for _ in 0..2 {
        frames.extend(
            p.frames(&[], c, s2, L4::Udp { len: 20 }, 0)
                .into_iter()
                .map(|f| f.0),
        );
    }
    ns.run_in_peer(|| send_frames(VETH_PEER, &frames));
    assert!(
        lab::wait_until(Duration::from_secs(10), || lab::count_lines(&pkts) >= 5),
        "5 packets logged: {}",
        d.log_text()
    );
    d.stop();
    let recs = lab::read_records(&pkts);
    assert_eq!(recs.len(), 5, "{recs:?}");
    for r in &recs {
        assert_eq!(r.u64("oob.family"), Some(7), "bridge: {}", r.line);
        let want = match r.u64("dest_port").or(r.u64("udp.dport")) {
            Some(7801) => Some(10),
            Some(7802) => None,
            p => panic!("port {p:?}: {}", r.line),
        };
        assert_eq!(r.u64("oob.vlan"), want, "{}", r.line);
    }
    // FLOW's records, ended at the stop: one per VLAN.
    let fl = lab::read_records(&flows);
    let mut got: Vec<(Option<u64>, u64, u64)> = fl
        .iter()
        .map(|r| {
            (
                r.u64("oob.vlan"),
                r.req_u64("orig.l4.dport"),
                r.req_u64("orig.raw.pktcount"),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, [(None, 7802, 2), (Some(10), 7801, 3)], "{fl:?}");
}
