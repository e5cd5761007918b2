//! FLOW on a capture file the test writes byte by byte (tests/lab/pcapgen):
//! TCP first seen mid-stream, a SYN-ACK first, a reset, a session whose
//! data packets the snap length cut, IPv4 and IPv6 UDP fragments, IPv6 TCP,
//! one 5-tuple on two VLANs and a QinQ frame. CAPTURE → BASE → FLOW →
//! IP2STR → JSON must give exactly the flows written (packets and IP bytes
//! per direction, initiator, guessed, VLAN, direction by home_net), and
//! the packets per direction must equal Argus's (`argus -r` + `ra`) for the
//! same file, but for the differences docs/COMPATIBILITY.md lists (FLOW).

use rulogd_tests::pcapgen::{tcp, End, Pcap, L4};
use rulogd_tests::{self as lab, Record, TempDir};
use std::collections::BTreeMap;
use std::path::Path;

const CONF: &str = concat!(
    lab::conf_global!("cap1:CAPTURE,base1:BASE,flow1:FLOW,ip2str1:IP2STR,json1:JSON"),
    "\n\
[cap1]
file=\"{PCAP}\"

[flow1]
home_net=\"10.1.0.0/16 2001:db8:1::/48\"

[json1]
file=\"{JSON}\"
"
);

/// The file's first second.
const T0: u64 = 1_600_000_000_000_000;
const SNAPLEN: usize = 200;

/// One flow as written: who sends what, and what FLOW must make of it.
struct Flow {
    name: &'static str,
    vlans: &'static [u16],
    client: End,
    server: End,
    /// (from the client?, layer 4, fragment size or 0).
    packets: Vec<(bool, L4, usize)>,
    /// Whether FLOW must mark the initiator guessed.
    guessed: bool,
    direction: &'static str,
}

fn ep(s: &str, port: u16) -> End {
    (s.parse().unwrap(), port)
}

fn t(flags: u8, len: usize) -> L4 {
    L4::Tcp { flags, len }
}

fn u(len: usize) -> L4 {
    L4::Udp { len }
}

const A: u8 = tcp::ACK;
const PA: u8 = tcp::PSH | tcp::ACK;
const SA: u8 = tcp::SYN | tcp::ACK;
const FA: u8 = tcp::FIN | tcp::ACK;

fn flows() -> Vec<Flow> {
    let (c, s) = (true, false);
    let handshake = |v: &mut Vec<(bool, L4, usize)>| {
        v.extend([(c, t(tcp::SYN, 0), 0), (s, t(SA, 0), 0), (c, t(A, 0), 0)]);
    };
    let close = [(c, t(FA, 0), 0), (s, t(FA, 0), 0), (c, t(A, 0), 0)];
    let mut full4 = Vec::new();
    handshake(&mut full4);
    full4.extend([(c, t(PA, 1400), 0), (s, t(A, 0), 0), (s, t(PA, 1400), 0)]);
    full4.extend(close);
    let mut full6 = Vec::new();
    handshake(&mut full6);
    full6.extend([(c, t(PA, 300), 0), (s, t(A, 0), 0)]);
    full6.extend(close);
    vec![
        Flow {
            name: "TCP first seen mid-stream",
            vlans: &[],
            client: ep("10.1.0.5", 43210),
            server: ep("93.184.216.34", 80),
            packets: vec![
                (c, t(PA, 500), 0),
                (s, t(A, 1400), 0),
                (c, t(A, 0), 0),
                (s, t(PA, 1400), 0),
            ],
            guessed: true,
            direction: "outbound",
        },
        Flow {
            name: "SYN-ACK first",
            vlans: &[],
            client: ep("198.51.100.7", 55000),
            server: ep("10.1.0.9", 22),
            packets: vec![
                (s, t(SA, 0), 0),
                (c, t(A, 0), 0),
                (c, t(PA, 100), 0),
                (s, t(PA, 200), 0),
                (c, t(FA, 0), 0),
                (s, t(FA, 0), 0),
                (c, t(A, 0), 0),
            ],
            guessed: true,
            direction: "inbound",
        },
        Flow {
            name: "refused with RST",
            vlans: &[],
            client: ep("10.1.0.5", 43300),
            server: ep("10.1.0.6", 8080),
            packets: vec![(c, t(tcp::SYN, 0), 0), (s, t(tcp::RST | A, 0), 0)],
            guessed: false,
            direction: "internal",
        },
        Flow {
            name: "TCP with data cut by the snap length",
            vlans: &[],
            client: ep("10.1.0.5", 43400),
            server: ep("203.0.113.10", 443),
            packets: full4,
            guessed: false,
            direction: "outbound",
        },
        Flow {
            name: "IPv4 UDP in fragments",
            vlans: &[],
            client: ep("10.1.0.5", 5000),
            server: ep("192.0.2.53", 53),
            packets: vec![(c, u(3000), 1480), (s, u(100), 0)],
            guessed: false,
            direction: "outbound",
        },
        Flow {
            name: "IPv6 UDP in fragments",
            vlans: &[],
            client: ep("2001:db8:1::5", 6000),
            server: ep("2001:db8:ff::1", 6001),
            packets: vec![(c, u(3000), 1448), (s, u(50), 0)],
            guessed: false,
            direction: "outbound",
        },
        Flow {
            name: "IPv6 TCP",
            vlans: &[],
            client: ep("2001:db8:1::5", 40001),
            server: ep("2001:db8:ff::2", 80),
            packets: full6,
            guessed: false,
            direction: "outbound",
        },
        Flow {
            name: "UDP on VLAN 10",
            vlans: &[10],
            client: ep("10.1.0.5", 7000),
            server: ep("10.1.0.200", 7001),
            packets: vec![(c, u(40), 0), (c, u(40), 0), (s, u(60), 0)],
            guessed: false,
            direction: "internal",
        },
        Flow {
            name: "the same UDP 5-tuple on VLAN 20",
            vlans: &[20],
            client: ep("10.1.0.5", 7000),
            server: ep("10.1.0.200", 7001),
            packets: vec![(c, u(40), 0), (s, u(60), 0)],
            guessed: false,
            direction: "internal",
        },
        Flow {
            name: "QinQ, service tag 30 outside customer tag 10",
            vlans: &[30, 10],
            client: ep("10.1.0.5", 7100),
            server: ep("10.1.0.200", 7101),
            packets: vec![(c, u(10), 0), (s, u(10), 0)],
            guessed: false,
            direction: "internal",
        },
    ]
}

/// Per flow: (orig packets, orig bytes, reply packets, reply bytes).
type Counts = (u64, u64, u64, u64);

/// Writes the file; returns each flow's counts as FLOW must give them.
fn write(path: &Path, flows: &[Flow]) -> Vec<Counts> {
    let mut p = Pcap::new(SNAPLEN);
    let mut want = Vec::new();
    for (i, f) in flows.iter().enumerate() {
        let mut c: Counts = (0, 0, 0, 0);
        let mut at = T0 + i as u64 * 100_000;
        for (from_client, l4, frag) in &f.packets {
            let (src, dst) = if *from_client {
                (f.client, f.server)
            } else {
                (f.server, f.client)
            };
            for size in p.packet(at, f.vlans, src, dst, *l4, *frag) {
                if *from_client {
                    c.0 += 1;
                    c.1 += size;
                } else {
                    c.2 += 1;
                    c.3 += size;
                }
            }
            at += 1000;
        }
        want.push(c);
    }
    std::fs::write(path, p.bytes()).unwrap();
    want
}

/// Flow key as printed: (proto, source, port, destination, port).
type Key = (u8, String, u16, String, u16);

fn key_of(f: &Flow) -> Key {
    let proto = match f.packets[0].1 {
        L4::Tcp { .. } => 6,
        L4::Udp { .. } => 17,
    };
    (
        proto,
        f.client.0.to_string(),
        f.client.1,
        f.server.0.to_string(),
        f.server.1,
    )
}

fn rulogd_key(r: &Record) -> (Key, Option<u64>) {
    let key = (
        r.req_u64("orig.ip.protocol") as u8,
        r.req_str("src_ip").to_string(),
        r.req_u64("orig.l4.sport") as u16,
        r.req_str("dest_ip").to_string(),
        r.req_u64("orig.l4.dport") as u16,
    );
    (key, r.u64("oob.vlan"))
}

/// Argus's packets per direction of each TCP and UDP flow in the file.
fn argus(dir: &Path, pcap: &Path) -> BTreeMap<Key, (u64, u64)> {
    lab::argus::flows(dir, pcap)
        .into_iter()
        .filter(|(k, _)| k.0 == 6 || k.0 == 17)
        .collect()
}

#[test]
fn flows_of_a_written_capture_are_exact_and_match_argus() {
    let dir = TempDir::new("flowpcap");
    let d = dir.path();
    let pcap = d.join("known.pcap");
    let flows = flows();
    let want = write(&pcap, &flows);
    let f = rulogd_tests::daemon::run_capture(None, d, "known", CONF, &pcap, &[]);
    assert_eq!(f.code, Some(0), "{}", f.log);
    let mut ours: BTreeMap<(Key, Option<u64>), &Record> = BTreeMap::new();
    for r in &f.records {
        assert!(
            ours.insert(rulogd_key(r), r).is_none(),
            "one record a flow: {}",
            r.line
        );
    }
    assert_eq!(ours.len(), flows.len(), "{:#?}", ours.keys());
    for (fl, w) in flows.iter().zip(&want) {
        let vlan = fl.vlans.first().map(|&v| u64::from(v));
        let r = ours.get(&(key_of(fl), vlan)).unwrap_or_else(|| {
            panic!(
                "{}: no flow {:?} in {:#?}",
                fl.name,
                key_of(fl),
                ours.keys()
            )
        });
        let got = (
            r.req_u64("orig.raw.pktcount"),
            r.req_u64("orig.raw.pktlen"),
            r.req_u64("reply.raw.pktcount"),
            r.req_u64("reply.raw.pktlen"),
        );
        assert_eq!(got, *w, "{}: {}", fl.name, r.line);
        assert_eq!(
            r.u64("flow.guessed"),
            Some(fl.guessed as u64),
            "{}",
            fl.name
        );
        assert_eq!(r.str("flow.direction"), Some(fl.direction), "{}", fl.name);
        assert_eq!(r.str("flow.end_reason"), Some("forced"), "{}", fl.name);
    }

    // Argus: packets per direction, the VLAN flows merged (its default
    // flow key has no VLAN), and with the two differences docs/
    // COMPATIBILITY.md lists: Argus skips the 802.1ad (QinQ) frames, and
    // reads a later IPv6 fragment's first bytes as UDP ports, so those
    // fragments make a flow of their own (the fragment header's bytes
    // give ports 256 and 6656 here) and are missing from their flow.
    let mut mine: BTreeMap<Key, (u64, u64)> = BTreeMap::new();
    for (fl, w) in flows.iter().zip(&want) {
        let e = mine.entry(key_of(fl)).or_default();
        e.0 += w.0;
        e.1 += w.2;
    }
    let mut expect = mine.clone();
    let qinq = &flows[9];
    assert!(qinq.vlans.len() == 2);
    expect.remove(&key_of(qinq));
    let frag6 = &flows[5];
    let later = mine[&key_of(frag6)].0 - 1;
    expect.get_mut(&key_of(frag6)).unwrap().0 = 1;
    let (c, s) = (frag6.client.0.to_string(), frag6.server.0.to_string());
    expect.insert((17, c, 256, s, 6656), (later, 0));
    assert_eq!(
        argus(d, &pcap),
        expect,
        "packets: argus vs rulogd's, differences applied"
    );
}
