//! PRINTPKT lines for hand-built packets decoded by BASE and IP2STR, as a
//! real stack would give them.

use super::*;
use crate::base::decode_for_fuzz;
use crate::ip2str::{format_v4, format_v6};
use crate::testutil::Harness;
use rulogd_plugin::Span;

/// Everything NFLOG, IFINDEX and the packet give PRINTPKT for one packet.
struct Pkt<'a> {
    family: u8,
    protocol: u16,
    data: &'a [u8],
    prefix: Option<&'a str>,
    mac: Option<&'a [u8]>,
    uid_gid: Option<(u32, u32)>,
    mark: u32,
}

impl<'a> Pkt<'a> {
    fn v4(data: &'a [u8]) -> Self {
        Pkt {
            family: 2,
            protocol: 0x0800,
            data,
            prefix: Some("PFX"),
            mac: None,
            uid_gid: None,
            mark: 0,
        }
    }

    fn v6(data: &'a [u8]) -> Self {
        Pkt {
            family: 10,
            protocol: 0x86dd,
            ..Pkt::v4(data)
        }
    }
}

/// Runs BASE's decoder and IP2STR's formatting over `p`, feeds PRINTPKT the
/// keys it reads and returns its line.
fn line(p: &Pkt) -> String {
    let mut h = Harness::new(REGISTRATION);
    // The packet, then the MAC header, in the record's buffer.
    let mut buf = p.data.to_vec();
    let mac_span = p.mac.map(|m| Span::new(buf.len(), m.len()));
    buf.extend_from_slice(p.mac.unwrap_or(&[]));
    h.rec.set_buf(buf.into());
    let names: Vec<&str> = INPUT_KEYS.iter().map(|k| &*k.name).collect();
    for (name, v) in decode_for_fuzz(p.family, p.protocol, p.data) {
        let text = match &v {
            Value::Ipv4(a) => Some(format_v4(a.octets())),
            Value::Ipv6(a) => Some(format_v6(a.octets())),
            _ => None,
        };
        let str_name = format!("{name}.str");
        match text {
            Some(t) if names.contains(&str_name.as_str()) => h.set(&str_name, Value::Str(t)),
            _ if names.contains(&name) => h.set(name, v),
            _ => {}
        }
    }
    h.set("oob.family", Value::U8(p.family));
    if let Some(px) = p.prefix {
        h.set("oob.prefix", Value::text(px.as_bytes()));
    }
    h.set("oob.in", Value::text(b"eth0"));
    h.set("oob.out", Value::text(b""));
    h.set("oob.mark", Value::U32(p.mark));
    if let Some(s) = mac_span {
        h.set("raw.mac", Value::Raw(s));
        h.set("raw.mac_len", Value::U16(s.len as u16));
    }
    if let Some((u, g)) = p.uid_gid {
        h.set("oob.uid", Value::U32(u));
        h.set("oob.gid", Value::U32(g));
    }
    assert_eq!(h.run(), Verdict::Continue);
    let out = h.out_bytes("print").expect("print is always set").to_vec();
    String::from_utf8(out).expect("ascii line")
}

/// An IPv4 header (20 bytes) for `payload` with `proto`, id 0x1234, TTL 64.
fn ip4(proto: u8, tos: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, tos];
    p.extend_from_slice(&(20 + payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34]);
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 header for `payload` with next header `nh`, TC 0x12, flow 0xabcde.
fn ip6(nh: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x61, 0x2a, 0xbc, 0xde];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[nh, 63]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(payload);
    p
}

/// A TCP header 1234 → 80, seq 1, ack 2, window 512, `flags`, urgent 7.
fn tcp(flags: u8) -> Vec<u8> {
    let mut t = vec![0x04, 0xd2, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, flags];
    t.extend_from_slice(&[0x02, 0x00, 0xab, 0xcd, 0x00, 0x07]);
    t
}

const UDP: [u8; 12] = [
    0xbe, 0xa6, 0xb2, 0x6e, 0x00, 0x0c, 0xfe, 0x23, b'a', b'b', b'c', b'd',
];

#[test]
fn the_line_ulogd_printed_in_the_research_notes() {
    // The packet behind the verified example: 127.0.0.1 UDP 48806 → 45678.
    let pkt: &[u8] = &[
        0x45, 0x00, 0x00, 0x24, 0xb2, 0x5f, 0x40, 0x00, 0x40, 0x11, 0x8a, 0x67, 127, 0, 0, 1, 127,
        0, 0, 1, 0xbe, 0xa6, 0xb2, 0x6e, 0x00, 0x10, 0xfe, 0x23, b'p', b'a', b'y', b'l', b'o',
        b'a', b'd', b'!',
    ];
    let mut h = Harness::new(REGISTRATION);
    h.rec.set_buf(pkt.to_vec().into());
    for (name, v) in decode_for_fuzz(2, 0x0800, pkt) {
        if let Value::Ipv4(a) = v {
            h.set(&format!("{name}.str"), Value::Str(format_v4(a.octets())));
        } else if INPUT_KEYS.iter().any(|k| k.name == name) {
            h.set(name, v);
        }
    }
    h.set("oob.family", Value::U8(2));
    h.set("oob.prefix", Value::text(b"TESTPFX"));
    h.set("oob.in", Value::text(b""));
    h.set("oob.out", Value::text(b"lo"));
    h.set("oob.uid", Value::U32(0));
    h.set("oob.gid", Value::U32(0));
    h.set("oob.mark", Value::U32(0));
    h.run();
    assert_eq!(
        h.out_bytes("print").expect("print"),
        b"TESTPFX IN= OUT=lo MAC= SRC=127.0.0.1 DST=127.0.0.1 LEN=36 TOS=00 PREC=0x00 TTL=64 \
          ID=45663 DF PROTO=UDP SPT=48806 DPT=45678 LEN=16 UID=0 GID=0 MARK=0x0 \n"
    );
}

#[test]
fn tcp_with_mac_flags_and_mark() {
    let mac = [2, 0, 0, 0, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 8, 0];
    let pkt = ip4(6, 0xb8, 0x4000, &tcp(0x3b));
    let p = Pkt {
        mac: Some(&mac),
        mark: 0xdead_beef,
        uid_gid: Some((1000, 100)),
        ..Pkt::v4(&pkt)
    };
    assert_eq!(
        line(&p),
        "PFX IN=eth0 OUT= MAC=02:00:00:00:00:01:aa:bb:cc:dd:ee:ff:08:00 SRC=10.0.0.1 \
         DST=10.0.0.2 LEN=40 TOS=18 PREC=0xA0 TTL=64 ID=4660 DF PROTO=TCP SPT=1234 DPT=80 \
         SEQ=1 ACK=2 WINDOW=512 URG ACK PSH SYN FIN URGP=7 UID=1000 GID=100 MARK=0xdeadbeef \n"
    );
    // Without URG, BASE leaves tcp.urgp unset and the line says 0.
    let pkt = ip4(6, 0, 0, &tcp(0x14));
    let l = line(&Pkt {
        prefix: None,
        ..Pkt::v4(&pkt)
    });
    assert!(
        l.starts_with("IN=eth0 OUT= MAC= SRC=10.0.0.1 DST=10.0.0.2 LEN=40 TOS=00 PREC=0x00"),
        "{l}"
    );
    assert!(l.ends_with("WINDOW=512 ACK RST URGP=0 MARK=0x0 \n"), "{l}");
}

#[test]
fn fragments_and_incomplete_headers() {
    let pkt = ip4(17, 0, 0x2000 | 0x8000 | 185, &UDP);
    let l = line(&Pkt::v4(&pkt));
    assert!(
        l.contains(" ID=4660 CE MF FRAG:185 PROTO=UDP SPT=48806 "),
        "{l}"
    );
    // UDP header cut: INCOMPLETE runs into what follows, as in ulogd.
    let pkt = ip4(17, 0, 0, &UDP[..4]);
    let l = line(&Pkt {
        uid_gid: Some((0, 0)),
        ..Pkt::v4(&pkt)
    });
    assert!(
        l.ends_with("PROTO=UDP INCOMPLETEUID=0 GID=0 MARK=0x0 \n"),
        "{l}"
    );
    let pkt = ip4(6, 0, 0, &tcp(0)[..19]);
    assert!(line(&Pkt::v4(&pkt)).contains("PROTO=TCP INCOMPLETEMARK"));
    let pkt = ip4(132, 0, 0, &[0, 1, 0, 2, 0, 0, 0, 0]);
    assert!(line(&Pkt::v4(&pkt)).contains("PROTO=SCTP INCOMPLETEMARK"));
    let pkt = ip4(1, 0, 0, &[8, 0, 0]);
    assert!(line(&Pkt::v4(&pkt)).contains("PROTO=ICMP INCOMPLETEMARK"));
    // Other protocols by number.
    let pkt = ip4(47, 0, 0, &[0; 8]);
    assert!(line(&Pkt::v4(&pkt)).contains(" ID=4660 PROTO=47 MARK=0x0 \n"));
}

#[test]
fn sctp_esp_and_ah() {
    let pkt = ip4(132, 0, 0, &[0x0b, 0xb8, 0x0f, 0xa0, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert!(line(&Pkt::v4(&pkt)).contains("PROTO=SCTP SPT=3000 DPT=4000 MARK"));
    // BASE sets ahesp.spi (ulogd's never does, so ulogd says INCOMPLETE).
    let pkt = ip4(50, 0, 0, &[0x00, 0x00, 0x12, 0x34, 0, 0, 0, 1]);
    assert!(line(&Pkt::v4(&pkt)).contains("PROTO=ESP SPI=0x1234 MARK"));
    let pkt = ip4(51, 0, 0, &[6, 4, 0, 0, 0xca, 0xfe, 0, 1, 0, 0, 0, 1]);
    assert!(line(&Pkt::v4(&pkt)).contains("PROTO=AH SPI=0xcafe0001 MARK"));
    // IPv6 ESP has no ip.protocol: still ESP (ulogd says AH).
    let pkt = ip6(50, &[0x00, 0x00, 0x00, 0x09, 0, 0, 0, 1]);
    assert!(line(&Pkt::v6(&pkt)).contains("PROTO=ESP SPI=0x9 MARK"));
}

/// The ICMP line for `icmp` (8 bytes): type and code and what follows.
fn icmp_tail(icmp: &[u8]) -> String {
    let pkt = ip4(1, 0, 0, icmp);
    let l = line(&Pkt::v4(&pkt));
    let at = l.find("PROTO=ICMP ").expect("icmp");
    l[at + 11..].trim_end_matches("MARK=0x0 \n").to_string()
}

#[test]
fn icmp_fields_follow_the_type() {
    assert_eq!(
        icmp_tail(&[8, 0, 0, 0, 0, 1, 0, 2]),
        "TYPE=8 CODE=0 ID=1 SEQ=2 "
    );
    assert_eq!(
        icmp_tail(&[0, 0, 0, 0, 0, 1, 0, 3]),
        "TYPE=0 CODE=0 ID=1 SEQ=3 "
    );
    // ulogd would print an echo id and sequence here (code 0 = ECHOREPLY).
    assert_eq!(icmp_tail(&[3, 0, 0, 0, 0, 0, 0, 0]), "TYPE=3 CODE=0 ");
    assert_eq!(icmp_tail(&[11, 0, 0, 0, 0, 0, 0, 0]), "TYPE=11 CODE=0 ");
    // ulogd would print no MTU here (code 4 = SOURCE_QUENCH).
    assert_eq!(
        icmp_tail(&[3, 4, 0, 0, 0, 0, 0x05, 0x78]),
        "TYPE=3 CODE=4 MTU=1400 "
    );
    assert_eq!(icmp_tail(&[3, 3, 0, 0, 0, 0, 0, 0]), "TYPE=3 CODE=3 ");
    assert_eq!(
        icmp_tail(&[5, 1, 0, 0, 192, 168, 1, 254]),
        "TYPE=5 CODE=1 GATEWAY=192.168.1.254 "
    );
    assert_eq!(
        icmp_tail(&[12, 0, 0, 0, 20, 0, 0, 0]),
        "TYPE=12 CODE=0 PARAMETER=20 "
    );
}

#[test]
fn ipv6_tcp_udp_icmpv6_and_fragments() {
    let pkt = ip6(6, &tcp(0x12));
    assert_eq!(
        line(&Pkt::v6(&pkt)),
        "PFX IN=eth0 OUT= MAC= SRC=2001:db8::1 DST=2001:db8::2 LEN=60 TC=18 HOPLIMIT=63 \
         FLOWLBL=703710 PROTO=TCP SPT=1234 DPT=80 SEQ=1 ACK=2 WINDOW=512 ACK SYN URGP=0 \
         MARK=0x0 \n"
    );
    let pkt = ip6(17, &UDP);
    assert!(
        line(&Pkt::v6(&pkt)).contains("FLOWLBL=703710 PROTO=UDP SPT=48806 DPT=45678 LEN=12 MARK")
    );
    let pkt = ip6(58, &[128, 0, 0, 0, 0x12, 0x34, 0, 9]);
    assert!(line(&Pkt::v6(&pkt)).contains(" PROTO=ICMPv6 TYPE=128 CODE=0 ID=4660 SEQ=9 MARK"));
    let pkt = ip6(58, &[135, 0, 0, 0, 0, 0, 0, 0]);
    assert!(line(&Pkt::v6(&pkt)).contains(" PROTO=ICMPv6 TYPE=135 CODE=0 MARK"));
    let pkt = ip6(58, &[128, 0, 0]);
    assert!(line(&Pkt::v6(&pkt)).contains(" PROTO=ICMPv6 INCOMPLETEMARK"));
    // A first fragment (offset 0, M) and a later one (offset 1448 bytes).
    let mut first = vec![17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
    first.extend_from_slice(&UDP);
    let l = line(&Pkt::v6(&ip6(44, &first)));
    assert!(
        l.contains("FLOWLBL=703710 FRAG: 0 ID: deadbeef PROTO=UDP SPT=48806 "),
        "{l}"
    );
    let later = [17, 0, 0x05, 0xa8, 0, 0, 0, 7, 1, 2, 3, 4];
    let l = line(&Pkt::v6(&ip6(44, &later)));
    assert!(
        l.contains("FRAG: 1448 ID: 00000007 PROTO=UDP INCOMPLETEMARK"),
        "{l}"
    );
    // Another next header: by number.
    assert!(line(&Pkt::v6(&ip6(59, &[]))).contains("FLOWLBL=703710 PROTO=59 MARK"));
}

/// An Ethernet/IPv4 ARP packet with operation `op`.
fn arp_pkt(op: u16) -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&[0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 192, 168, 1, 2]);
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 192, 168, 1, 1]);
    p
}

#[test]
fn arp_in_bridge_and_native() {
    let req = arp_pkt(1);
    fn bridge(data: &[u8]) -> Pkt<'_> {
        Pkt {
            family: 7,
            protocol: 0x0806,
            ..Pkt::v4(data)
        }
    }
    assert!(line(&bridge(&req))
        .ends_with("MAC= SRC=192.168.1.2 DST=192.168.1.1 PROTO=ARP REQUEST MARK=0x0 \n"));
    let rep = arp_pkt(2);
    assert!(line(&bridge(&rep)).contains("PROTO=ARP REPLY REPLY_MAC=02:11:22:33:44:55 MARK"));
    assert!(line(&bridge(&arp_pkt(10))).contains("PROTO=ARP NAK MARK"));
    assert!(line(&bridge(&arp_pkt(9))).contains("PROTO=ARP CODE=9 MARK"));
    // Truncated: no operation, no addresses.
    assert!(line(&bridge(&req[..10])).ends_with("MAC= PROTO=ARP MARK=0x0 \n"));
    // Native ARP (family 3) as ulogd master prints it.
    let native = Pkt {
        family: 3,
        protocol: 0x0806,
        ..Pkt::v4(&req)
    };
    assert!(line(&native).contains("MAC= SRC=192.168.1.2 DST=192.168.1.1 PROTO=ARP REQUEST "));
}

#[test]
fn bridge_ip_and_unknown_ethertypes() {
    let pkt = ip4(17, 0, 0, &UDP);
    let l = line(&Pkt {
        family: 7,
        ..Pkt::v4(&pkt)
    });
    assert!(l.contains("MAC= SRC=10.0.0.1 DST=10.0.0.2 LEN=32 "), "{l}");
    let pkt6 = ip6(17, &UDP);
    let l = line(&Pkt {
        family: 7,
        protocol: 0x86dd,
        ..Pkt::v6(&pkt6)
    });
    assert!(
        l.contains("MAC= SRC=2001:db8::1 DST=2001:db8::2 LEN=52 "),
        "{l}"
    );
    let l = line(&Pkt {
        family: 7,
        protocol: 0x8100,
        ..Pkt::v4(&pkt)
    });
    assert_eq!(l, "PFX IN=eth0 OUT= MAC= PROTO=33024 MARK=0x0 \n");
    // An unknown family prints the header part only.
    let l = line(&Pkt {
        family: 12,
        ..Pkt::v4(&pkt)
    });
    assert_eq!(l, "PFX IN=eth0 OUT= MAC= MARK=0x0 \n");
}

#[test]
fn optional_and_odd_inputs() {
    // oob.uid/gid have no producer; in/out only printed together; a MAC
    // of zero bytes prints "MAC=" and nothing else, as ulogd does.
    let mut h = Harness::with(REGISTRATION, |k| k != "oob.uid" && k != "oob.gid", |_| true);
    h.rec.set_buf(b"x\0y".to_vec().into());
    h.set("oob.family", Value::U8(0));
    h.set("oob.prefix", Value::StrSpan(Span::new(0, 3)));
    h.set("oob.in", Value::text(b"eth0"));
    h.set("raw.mac", Value::Raw(Span::new(0, 0)));
    h.set("raw.mac_len", Value::U16(0));
    h.run();
    assert_eq!(h.out_bytes("print"), Some(&b"x MAC=\n"[..]));
    // raw.mac_len larger than raw.mac: only what is there.
    h.clear();
    h.set("raw.mac", Value::Raw(Span::new(0, 3)));
    h.set("raw.mac_len", Value::U16(500));
    h.run();
    assert_eq!(h.out_bytes("print"), Some(&b"MAC=78:00:79 \n"[..]));
    // Nothing downstream reads print: nothing is done.
    let mut h = Harness::with(REGISTRATION, |_| true, |_| false);
    h.run();
    assert!(h.valid_outputs().is_empty());
}

#[test]
fn random_packets_never_panic_and_end_the_line() {
    let seeds: [Vec<u8>; 4] = [
        ip4(6, 0, 0, &tcp(0x3f)),
        ip6(58, &[128, 0, 0, 0, 0, 1, 0, 2]),
        arp_pkt(2),
        ip4(1, 0, 0, &[5, 1, 0, 0, 1, 2, 3, 4]),
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut p = seeds[i % 4].clone();
        let at = (x as usize) % p.len();
        p[at] = (x >> 32) as u8;
        p.truncate((x >> 40) as usize % (p.len() + 1));
        let (family, protocol) = [
            (2, 0x0800),
            (10, 0x86dd),
            (7, 0x0806),
            (7, (x >> 48) as u16),
        ][(x >> 20) as usize % 4];
        let l = line(&Pkt {
            family,
            protocol,
            ..Pkt::v4(&p)
        });
        assert!(
            l.ends_with('\n') && l.starts_with("PFX IN=eth0 OUT= MAC= "),
            "{l}"
        );
    }
}

#[test]
fn declares_ulogd_keys() {
    assert_eq!(INPUT_KEYS.len(), 60);
    let optional: Vec<_> = INPUT_KEYS
        .iter()
        .filter(|k| k.is_optional())
        .map(|k| &*k.name)
        .collect();
    assert_eq!(optional, ["oob.uid", "oob.gid"]);
    assert!(INPUT_KEYS.iter().all(|k| k.ty == KeyType::None));
    assert_eq!(INPUT_KEYS[OOB_PROTOCOL].name, "oob.protocol");
    assert_eq!(INPUT_KEYS[SCTP_DPORT].name, "sctp.dport");
    assert_eq!(OUTPUT_KEYS[0].name, "print");
}

/// Cost of one line (format + the Arc for the value). Run with
/// `cargo test --release -p rulogd-filter printpkt::tests::bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_line_cost() {
    let pkt = ip4(6, 0, 0x4000, &tcp(0x18));
    let mac = [2, 0, 0, 0, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 8, 0];
    let mut h = Harness::new(REGISTRATION);
    let mut buf = pkt.clone();
    buf.extend_from_slice(&mac);
    h.rec.set_buf(buf.into());
    for (name, v) in decode_for_fuzz(2, 0x0800, &pkt) {
        if let Value::Ipv4(a) = v {
            h.set(&format!("{name}.str"), Value::Str(format_v4(a.octets())));
        } else if INPUT_KEYS.iter().any(|k| k.name == name) {
            h.set(name, v);
        }
    }
    h.set("oob.family", Value::U8(2));
    h.set("oob.prefix", Value::text(b"IN"));
    h.set("oob.in", Value::text(b"eth0"));
    h.set("oob.out", Value::text(b""));
    h.set("oob.mark", Value::U32(0));
    h.set("raw.mac", Value::Raw(Span::new(pkt.len(), 14)));
    h.set("raw.mac_len", Value::U16(14));
    let n = 2_000_000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        h.run();
    }
    let per = t.elapsed().as_nanos() as f64 / n as f64;
    let l = h.out_bytes("print").expect("print").len();
    // The same line formatted into the reused buffer only, without the Arc.
    let slots: [Option<Slot>; N_IN] = std::array::from_fn(|i| Some(i as Slot));
    let keys = Keys {
        rec: &h.rec,
        slots: &slots,
    };
    let mut buf = Vec::with_capacity(1024);
    let t = std::time::Instant::now();
    for _ in 0..n {
        buf.clear();
        print(&keys, &mut buf);
        std::hint::black_box(&buf);
    }
    let fmt = t.elapsed().as_nanos() as f64 / n as f64;
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(Value::text(std::hint::black_box(&buf)));
    }
    let arc = t.elapsed().as_nanos() as f64 / n as f64;
    eprintln!(
        "PRINTPKT: {per:.0} ns per {l}-byte line in the filter; \
         {fmt:.0} ns formatting alone, {arc:.0} ns for the Arc alone"
    );
}
