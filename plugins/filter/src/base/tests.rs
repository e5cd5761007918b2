//! BASE on hand-built packets: values, and which keys are (not) set.

use super::REGISTRATION;
use crate::testutil::{Harness, PKT_OFFSET};
use rulogd_plugin::{Value, Verdict};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::test_packets::*;

/// Runs BASE over `pkt` as NFLOG would deliver it.
pub(super) fn run(family: u8, protocol: u16, pkt: &[u8]) -> Harness {
    let mut h = Harness::new(REGISTRATION);
    h.set("oob.family", Value::U8(family));
    h.set("oob.protocol", Value::U16(protocol));
    h.set_packet(pkt);
    assert_eq!(h.run(), Verdict::Continue);
    h.assert_gap_untouched();
    h
}

/// An integer or bool output that must be set.
fn u(h: &Harness, name: &str) -> u64 {
    h.out_u64(name).unwrap_or_else(|| panic!("{name} not set"))
}

/// An address output that must be set.
fn ip(h: &Harness, name: &str) -> IpAddr {
    match h.out(name) {
        Some(Value::Ipv4(a)) => IpAddr::V4(*a),
        Some(Value::Ipv6(a)) => IpAddr::V6(*a),
        other => panic!("{name}: {other:?}"),
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().expect("test address"))
}

pub(super) const IP4_KEYS: [&str; 10] = [
    "ip.saddr",
    "ip.daddr",
    "ip.protocol",
    "ip.tos",
    "ip.ttl",
    "ip.totlen",
    "ip.ihl",
    "ip.csum",
    "ip.id",
    "ip.fragoff",
];

/// The IPv4 keys, `extra` and oob.protocol, in key order.
fn ip4_plus(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v: Vec<&str> = IP4_KEYS.to_vec();
    v.extend_from_slice(extra);
    v.push("oob.protocol");
    v
}

#[test]
fn ipv4_udp_matches_ulogd_json_numbers() {
    let h = run(2, 0x0800, UDP4);
    assert_eq!(ip(&h, "ip.saddr"), v4(127, 0, 0, 1));
    assert_eq!(ip(&h, "ip.daddr"), v4(127, 0, 0, 1));
    let expect = [
        ("ip.protocol", 17),
        ("ip.tos", 0),
        ("ip.ttl", 64),
        ("ip.totlen", 36),
        ("ip.ihl", 5),
        ("ip.csum", 35431),
        ("ip.id", 45663),
        ("ip.fragoff", 16384),
        ("udp.sport", 48806),
        ("udp.dport", 45678),
        ("udp.len", 16),
        ("udp.csum", 65059),
        ("oob.protocol", 2048),
    ];
    for (k, v) in expect {
        assert_eq!(u(&h, k), v, "{k}");
    }
    assert_eq!(
        h.valid_outputs(),
        ip4_plus(&["udp.sport", "udp.dport", "udp.len", "udp.csum"])
    );
}

#[test]
fn ipv4_tcp_flags_urgent_offset_reserved() {
    let h = run(2, 0x0800, TCP4);
    assert_eq!(ip(&h, "ip.saddr"), v4(192, 168, 1, 2));
    let expect = [
        ("ip.tos", 0x10),
        ("ip.fragoff", 0),
        ("tcp.sport", 1234),
        ("tcp.dport", 80),
        ("tcp.seq", 0x0102_0304),
        ("tcp.ackseq", 0x0a0b_0c0d),
        ("tcp.window", 65535),
        ("tcp.offset", 6),
        ("tcp.reserved", 1),
        ("tcp.urg", 1),
        ("tcp.urgp", 7),
        ("tcp.ack", 0),
        ("tcp.psh", 1),
        ("tcp.rst", 0),
        ("tcp.syn", 0),
        ("tcp.fin", 1),
        ("tcp.res1", 1),
        ("tcp.res2", 3),
        ("tcp.csum", 0xabcd),
    ];
    for (k, v) in expect {
        assert_eq!(u(&h, k), v, "{k}");
    }
    assert!(matches!(h.out("tcp.urg"), Some(Value::Bool(true))));
    assert!(h.out("udp.sport").is_none() && h.out("icmp.type").is_none());
}

#[test]
fn tcp_urgent_pointer_only_with_urg() {
    let mut p = TCP4.to_vec();
    p[33] = 0x12; // ACK SYN
    let h = run(2, 0x0800, &p);
    assert_eq!(u(&h, "tcp.urg"), 0);
    assert_eq!(u(&h, "tcp.syn"), 1);
    assert_eq!(u(&h, "tcp.ack"), 1);
    assert_eq!(u(&h, "tcp.res2"), 0);
    assert!(h.out("tcp.urgp").is_none());
}

#[test]
fn icmp_echo_has_id_and_seq_and_unswapped_checksum() {
    let h = run(2, 0x0800, ECHO4);
    assert_eq!(u(&h, "icmp.type"), 8);
    assert_eq!(u(&h, "icmp.code"), 0);
    assert_eq!(u(&h, "icmp.echoid"), 1);
    assert_eq!(u(&h, "icmp.echoseq"), 2);
    // ulogd prints the wire bytes read as a native-endian u16.
    assert_eq!(
        u(&h, "icmp.csum"),
        u64::from(u16::from_ne_bytes([0xf7, 0xfc]))
    );
    assert!(h.out("icmp.gateway").is_none() && h.out("icmp.fragmtu").is_none());
}

#[test]
fn icmp_redirect_has_gateway_as_on_the_wire() {
    let h = run(2, 0x0800, REDIRECT4);
    assert_eq!(u(&h, "icmp.type"), 5);
    assert_eq!(ip(&h, "icmp.gateway"), v4(192, 168, 1, 254));
    assert!(h.out("icmp.echoid").is_none() && h.out("icmp.fragmtu").is_none());
    // Parameter problem sets it too (those bytes hold the pointer there).
    let mut p = REDIRECT4.to_vec();
    p[20] = 12;
    let h = run(2, 0x0800, &p);
    assert_eq!(ip(&h, "icmp.gateway"), v4(192, 168, 1, 254));
}

#[test]
fn icmp_frag_needed_has_mtu_only_for_that_code() {
    let h = run(2, 0x0800, FRAGNEEDED4);
    assert_eq!(u(&h, "icmp.fragmtu"), 1500);
    assert!(h.out("icmp.gateway").is_none());
    let mut p = FRAGNEEDED4.to_vec();
    p[21] = 3; // port unreachable
    let h = run(2, 0x0800, &p);
    assert!(h.out("icmp.fragmtu").is_none());
    assert_eq!(u(&h, "icmp.code"), 3);
}

#[test]
fn ipv6_udp() {
    let h = run(10, 0x86dd, UDP6);
    assert_eq!(ip(&h, "ip.saddr"), v6("2001:db8::1"));
    assert_eq!(ip(&h, "ip.daddr"), v6("2001:db8::2"));
    let expect = [
        ("ip6.payloadlen", 16),
        ("ip6.priority", 0xab),
        ("ip6.flowlabel", 0xcdef1),
        ("ip6.hoplimit", 64),
        ("ip6.nexthdr", 17),
        ("ip.protocol", 17),
        ("udp.sport", 5000),
        ("udp.dport", 53),
        ("udp.len", 16),
        ("udp.csum", 0xbeef),
        ("oob.protocol", 0x86dd),
    ];
    for (k, v) in expect {
        assert_eq!(u(&h, k), v, "{k}");
    }
    for k in ["ip.ttl", "ip.ihl", "ip6.fragoff", "ip6.fragid"] {
        assert!(h.out(k).is_none(), "{k}");
    }
}

#[test]
fn ipv6_first_fragment_after_hop_by_hop_decodes_udp() {
    let h = run(10, 0x86dd, FRAG6);
    assert_eq!(u(&h, "ip6.fragoff"), 0);
    assert_eq!(u(&h, "ip6.fragid"), 0xdead_beef);
    assert_eq!(u(&h, "ip.protocol"), 17);
    assert_eq!(u(&h, "ip6.nexthdr"), 17);
    assert_eq!(u(&h, "udp.sport"), 7);
}

#[test]
fn ipv6_later_fragment_stops_before_layer_4() {
    let mut p = FRAG6.to_vec();
    p[FRAG_OFFLG] = 0x00;
    p[FRAG_OFFLG + 1] = 0xb9; // offset 23 (184 bytes), more fragments
    let h = run(10, 0x86dd, &p);
    assert_eq!(u(&h, "ip6.fragoff"), 184);
    assert_eq!(u(&h, "ip6.nexthdr"), 17);
    assert!(h.out("ip.protocol").is_none());
    assert!(h.out("udp.sport").is_none());
}

#[test]
fn icmpv6_echo() {
    let h = run(10, 0x86dd, ECHO6);
    assert_eq!(ip(&h, "ip.saddr"), v6("::1"));
    assert_eq!(u(&h, "icmpv6.type"), 128);
    assert_eq!(u(&h, "icmpv6.code"), 0);
    assert_eq!(u(&h, "icmpv6.echoid"), 0x1234);
    assert_eq!(u(&h, "icmpv6.echoseq"), 9);
    assert_eq!(
        u(&h, "icmpv6.csum"),
        u64::from(u16::from_ne_bytes([0x12, 0x34]))
    );
    assert_eq!(u(&h, "ip.protocol"), 58);
    // Not an echo: no id/seq.
    let mut p = ECHO6.to_vec();
    p[40] = 135;
    let h = run(10, 0x86dd, &p);
    assert!(h.out("icmpv6.echoid").is_none() && h.out("icmpv6.echoseq").is_none());
    assert_eq!(u(&h, "icmpv6.type"), 135);
}

#[test]
fn sctp_ports_and_checksum() {
    let h = run(2, 0x0800, SCTP4);
    assert_eq!(u(&h, "sctp.sport"), 2905);
    assert_eq!(u(&h, "sctp.dport"), 2906);
    assert_eq!(u(&h, "sctp.csum"), 0x1234_5678);
    let mut want = IP4_KEYS.to_vec();
    want.extend(["oob.protocol", "sctp.sport", "sctp.dport", "sctp.csum"]);
    assert_eq!(h.valid_outputs(), want);
}

#[test]
fn esp_and_ah_spi_over_ipv4() {
    let h = run(2, 0x0800, ESP4);
    assert_eq!(u(&h, "ahesp.spi"), 0x1234);
    let h = run(2, 0x0800, AH4);
    assert_eq!(u(&h, "ahesp.spi"), 0xabcd_ef01);
    // As ulogd, nothing after AH is decoded over IPv4.
    assert!(h.out("tcp.sport").is_none());
}

#[test]
fn ipv6_walks_past_ah_to_tcp() {
    let h = run(10, 0x86dd, AH6);
    assert_eq!(u(&h, "ahesp.spi"), 256);
    assert_eq!(u(&h, "ip.protocol"), 6);
    assert_eq!(u(&h, "ip6.nexthdr"), 6);
    assert_eq!(u(&h, "tcp.sport"), 22);
    assert_eq!(u(&h, "tcp.syn"), 1);
    assert_eq!(u(&h, "tcp.offset"), 5);
}

#[test]
fn ipv6_esp_ends_the_walk() {
    let h = run(10, 0x86dd, &esp6(0));
    assert_eq!(u(&h, "ahesp.spi"), 7);
    assert_eq!(u(&h, "ip6.nexthdr"), 50);
    assert!(h.out("ip.protocol").is_none());
    // ulogd reads a "length" from the SPI and gives up when the packet is
    // shorter; we keep its ip6.nexthdr but still report the SPI.
    let h = run(10, 0x86dd, &esp6(0xff));
    assert_eq!(u(&h, "ahesp.spi"), 0x00ff_0007);
    assert!(h.out("ip6.nexthdr").is_none());
}

fn check_arp(h: &Harness) {
    assert_eq!(u(h, "arp.hwtype"), 1);
    assert_eq!(u(h, "arp.protocoltype"), 0x0800);
    assert_eq!(u(h, "arp.operation"), 1);
    assert_eq!(ip(h, "arp.saddr"), v4(192, 168, 1, 2));
    assert_eq!(ip(h, "arp.daddr"), v4(192, 168, 1, 1));
    assert_eq!(
        h.out_bytes("arp.shwaddr"),
        Some(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56][..])
    );
    assert_eq!(h.out_bytes("arp.dhwaddr"), Some(&[0u8; 6][..]));
    // No copy: a span into the record's buffer, after the filler bytes.
    match h.out("arp.shwaddr") {
        Some(Value::Raw(s)) => assert_eq!(s.off as usize, PKT_OFFSET + 8),
        other => panic!("arp.shwaddr: {other:?}"),
    }
    assert!(h.out("ip.saddr").is_none());
}

#[test]
fn arp_in_bridge_and_native() {
    check_arp(&run(7, 0x0806, ARP));
    check_arp(&run(3, 0x0806, ARP));
    let h = run(7, 0x0806, &ARP[..27]);
    assert_eq!(h.valid_outputs(), ["oob.protocol"]);
}

#[test]
fn bridge_dispatches_on_ethertype() {
    assert_eq!(u(&run(7, 0x0800, UDP4), "udp.dport"), 45678);
    assert_eq!(u(&run(7, 0x86dd, UDP6), "udp.dport"), 53);
    // VLAN or anything else: only oob.protocol.
    assert_eq!(run(7, 0x8100, UDP4).valid_outputs(), ["oob.protocol"]);
}

#[test]
fn unknown_family_sets_only_oob_protocol() {
    for fam in [0, 1, 5, 12, 255] {
        let h = run(fam, 0x0800, UDP4);
        assert_eq!(h.valid_outputs(), ["oob.protocol"], "family {fam}");
    }
}

#[test]
fn missing_inputs_read_as_zero() {
    let mut h = Harness::new(REGISTRATION);
    h.set("oob.family", Value::U8(2));
    h.set_packet(UDP4);
    h.run();
    // No oob.protocol upstream value: ulogd still sets it, to 0.
    assert_eq!(u(&h, "oob.protocol"), 0);
    assert_eq!(u(&h, "udp.sport"), 48806);
    // Without raw.pktlen ulogd decodes nothing.
    h.clear();
    h.set("oob.family", Value::U8(2));
    h.set(
        "raw.pkt",
        Value::Raw(rulogd_plugin::Span::new(PKT_OFFSET, UDP4.len())),
    );
    h.run();
    assert_eq!(h.valid_outputs(), ["oob.protocol"]);
}

#[test]
fn pktlen_limits_and_buffer_bounds_what_is_read() {
    let mut h = run(2, 0x0800, UDP4);
    h.clear();
    h.set("oob.family", Value::U8(2));
    h.set("raw.pktlen", Value::U32(27)); // one byte short of UDP
    h.set(
        "raw.pkt",
        Value::Raw(rulogd_plugin::Span::new(PKT_OFFSET, UDP4.len())),
    );
    h.run();
    assert!(h.out("ip.saddr").is_some() && h.out("udp.sport").is_none());
    // A pktlen larger than what was captured is not trusted.
    h.clear();
    h.set("oob.family", Value::U8(2));
    h.set("raw.pktlen", Value::U32(100_000));
    h.set(
        "raw.pkt",
        Value::Raw(rulogd_plugin::Span::new(PKT_OFFSET, 27)),
    );
    h.run();
    assert!(h.out("ip.saddr").is_some() && h.out("udp.sport").is_none());
}

#[test]
fn quirks_kept_from_ulogd() {
    // A non-first IPv4 fragment still has its payload decoded as a header.
    let mut p = UDP4.to_vec();
    p[6] = 0x00;
    p[7] = 0x10; // offset 16 (128 bytes)
    let h = run(2, 0x0800, &p);
    assert_eq!(u(&h, "ip.fragoff"), 16);
    assert_eq!(u(&h, "udp.sport"), 48806);
    // ihl below 5: the next header starts inside the IP header.
    let mut p = UDP4.to_vec();
    p[0] = 0x41;
    let h = run(2, 0x0800, &p);
    assert_eq!(u(&h, "ip.ihl"), 1);
    assert_eq!(u(&h, "udp.sport"), 45663); // bytes 4..6: the IP id
}

#[test]
fn inactive_outputs_are_not_written() {
    let mut h = Harness::with(REGISTRATION, |_| true, |k| k.starts_with("udp."));
    h.set("oob.family", Value::U8(2));
    h.set("oob.protocol", Value::U16(0x0800));
    h.set_packet(UDP4);
    h.run();
    assert_eq!(
        h.valid_outputs(),
        ["udp.sport", "udp.dport", "udp.len", "udp.csum"]
    );
    h.assert_gap_untouched();
}

#[test]
fn records_do_not_leak_between_packets() {
    let mut h = run(2, 0x0800, TCP4);
    h.clear();
    h.set("oob.family", Value::U8(2));
    h.set("oob.protocol", Value::U16(0x0800));
    h.set_packet(UDP4);
    h.run();
    assert!(h.out("tcp.sport").is_none());
    assert_eq!(u(&h, "udp.sport"), 48806);
}

#[test]
fn decode_for_fuzz_lists_keys_in_order() {
    let keys: Vec<_> = super::decode_for_fuzz(7, 0x0806, ARP)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        [
            "oob.protocol",
            "arp.hwtype",
            "arp.protocoltype",
            "arp.operation",
            "arp.shwaddr",
            "arp.saddr",
            "arp.dhwaddr",
            "arp.daddr"
        ]
    );
    assert!(super::fuzz_input(&[]).is_empty());
}

#[test]
fn corpus_replays_without_panics() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fuzz/corpus/base");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("fuzz corpus directory") {
        let path = e.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        for cut in 0..=data.len() {
            let _ = super::fuzz_input(&data[..cut]);
        }
        assert!(
            super::fuzz_input(&data).len() > 1,
            "{} decodes to nothing",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 12, "only {n} corpus files");
}

/// NFLOG → BASE → IFINDEX → IP2STR in one record, each input bound to its
/// nearest upstream producer as the core binds them.
#[test]
fn stack_of_three_filters_shares_one_record() {
    use rulogd_plugin::{
        Binding, BuildCtx, Builder, Filter, Options, Record, SharedRegistry, Slot,
    };

    // What the input produces, at slots 0.. (name, slot), in stack order.
    let mut producers: Vec<(String, Slot)> = [
        "raw.pkt",
        "raw.pktlen",
        "oob.family",
        "oob.protocol",
        "oob.ifindex_in",
        "oob.ifindex_out",
    ]
    .iter()
    .enumerate()
    .map(|(i, n)| (n.to_string(), i as Slot))
    .collect();
    let shared = SharedRegistry::default();
    let mut filters: Vec<(Box<dyn Filter>, Slot)> = Vec::new();
    for reg in [
        REGISTRATION,
        crate::ifindex::REGISTRATION,
        crate::ip2str::REGISTRATION,
    ] {
        let opts = Options::defaults(reg.info.options).expect("options");
        let ctx = BuildCtx {
            instance: reg.info.name,
            info: reg.info,
            options: &opts,
            shared: &shared,
        };
        let Builder::Filter(build) = reg.builder else {
            panic!("not a filter");
        };
        let mut f = build(&ctx).expect("build");
        let base = producers.len() as Slot;
        let inputs = reg
            .info
            .input_keys
            .iter()
            .map(|k| {
                let p = producers.iter().rev().find(|(n, _)| *n == k.name);
                p.map(|(_, s)| *s)
            })
            .collect();
        f.bind(&Binding {
            instance: reg.info.name,
            input_keys: reg.info.input_keys,
            inputs,
            upstream: &[],
            output_base: base,
            active: vec![true; reg.info.output_keys.len()],
        })
        .expect("bind");
        for (i, k) in reg.info.output_keys.iter().enumerate() {
            producers.push((k.name.to_string(), base + i as Slot));
        }
        filters.push((f, base));
    }
    let slot = |name: &str| {
        let p = producers.iter().rev().find(|(n, _)| n == name);
        p.map(|(_, s)| *s).expect(name)
    };

    let mut rec = Record::with_slots(producers.len());
    let mut buf = vec![0u8; 5];
    buf.extend_from_slice(UDP4);
    rec.set_buf(buf.into());
    rec.set(0, Value::Raw(rulogd_plugin::Span::new(5, UDP4.len())));
    rec.set(1, Value::U32(UDP4.len() as u32));
    rec.set(2, Value::U8(2));
    rec.set(3, Value::U16(0x0800));
    rec.set(5, Value::U32(1));
    for (f, _) in &mut filters {
        assert_eq!(f.process(&mut rec), Verdict::Continue);
    }
    let text = |name: &str| rec.get_bytes(Some(slot(name))).map(<[u8]>::to_vec);
    assert_eq!(text("ip.saddr.str").as_deref(), Some(&b"127.0.0.1"[..]));
    assert_eq!(text("ip.daddr.str").as_deref(), Some(&b"127.0.0.1"[..]));
    assert_eq!(text("oob.in").as_deref(), Some(&b""[..]));
    assert_eq!(rec.get_u64(Some(slot("udp.dport"))), Some(45678));
    assert!(rec.get(slot("arp.saddr.str")).is_none());
}

#[test]
fn declares_ulogd_keys_in_order() {
    let info = &super::INFO;
    let want = "ip.saddr ip.daddr ip.protocol ip.tos ip.ttl ip.totlen ip.ihl ip.csum ip.id \
        ip.fragoff ip6.payloadlen ip6.priority ip6.flowlabel ip6.hoplimit ip6.nexthdr \
        ip6.fragoff ip6.fragid tcp.sport tcp.dport tcp.seq tcp.ackseq tcp.window tcp.offset \
        tcp.reserved tcp.urg tcp.urgp tcp.ack tcp.psh tcp.rst tcp.syn tcp.fin tcp.res1 \
        tcp.res2 tcp.csum udp.sport udp.dport udp.len udp.csum icmp.type icmp.code \
        icmp.echoid icmp.echoseq icmp.gateway icmp.fragmtu icmp.csum icmpv6.type icmpv6.code \
        icmpv6.echoid icmpv6.echoseq icmpv6.csum ahesp.spi oob.protocol arp.hwtype \
        arp.protocoltype arp.operation arp.shwaddr arp.saddr arp.dhwaddr arp.daddr \
        sctp.sport sctp.dport sctp.csum";
    let names: Vec<&str> = info.output_keys.iter().map(|k| &*k.name).collect();
    assert_eq!(names, want.split_whitespace().collect::<Vec<_>>());
    let cim: Vec<(&str, &str)> = info
        .output_keys
        .iter()
        .filter_map(|k| k.cim.map(|c| (&*k.name, c)))
        .collect();
    assert_eq!(
        cim,
        [
            ("tcp.sport", "src_port"),
            ("tcp.dport", "dest_port"),
            ("udp.sport", "src_port"),
            ("udp.dport", "dest_port"),
            ("sctp.sport", "src_port"),
            ("sctp.dport", "dest_port"),
        ]
    );
    let ipfix = |n: &str| {
        info.output_keys
            .iter()
            .find(|k| k.name == n)
            .and_then(|k| k.ipfix)
    };
    assert_eq!(ipfix("ip.saddr"), Some((0, 8)));
    assert_eq!(ipfix("tcp.urgp"), Some((0, 187)));
    assert_eq!(ipfix("ip.csum"), None);
    let inputs: Vec<&str> = info.input_keys.iter().map(|k| &*k.name).collect();
    assert_eq!(
        inputs,
        ["raw.pkt", "raw.pktlen", "oob.family", "oob.protocol"]
    );
    assert!(info.input_keys.iter().all(|k| !k.is_optional()));
    assert_eq!(info.input_keys[0].ipfix, Some((21373, 1)));
}
