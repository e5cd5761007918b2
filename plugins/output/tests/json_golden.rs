//! The example line of ulogd 2.0.8 (research notes §4.5), reproduced byte for
//! byte through the whole JSON output under TZ=Europe/Berlin.
//!
//! This file holds one test so the process-wide TZ it sets affects nothing else.

mod common;

use rulogd_plugin::{KeyDef, KeyType, Output, Record, SharedRegistry, Slot, UpstreamKey, Value};
use std::collections::HashMap;

use KeyType::{Bool, IpAddr as Ip, Raw, String as Str, U16, U32, U8};

type Table = &'static [(&'static str, KeyType, Option<&'static str>)];

const NFLOG: Table = &[
    ("raw.mac", Raw, None),
    ("raw.pkt", Raw, None),
    ("raw.pktlen", U32, None),
    ("raw.pktcount", U32, None),
    ("oob.prefix", Str, None),
    ("oob.time.sec", U32, None),
    ("oob.time.usec", U32, None),
    ("oob.mark", U32, None),
    ("oob.ifindex_in", U32, None),
    ("oob.ifindex_out", U32, None),
    ("oob.hook", U8, None),
    ("raw.mac_len", U16, None),
    ("oob.seq.local", U32, None),
    ("oob.seq.global", U32, None),
    ("oob.family", U8, None),
    ("oob.protocol", U16, None),
    ("oob.uid", U32, None),
    ("oob.gid", U32, None),
    ("raw.label", U8, None),
    ("raw.type", U16, None),
    ("raw.mac.saddr", Raw, None),
    ("raw.mac.addrlen", U16, None),
    ("raw", Raw, None),
    ("ct", Raw, None),
];

const BASE: Table = &[
    ("ip.saddr", Ip, None),
    ("ip.daddr", Ip, None),
    ("ip.protocol", U8, None),
    ("ip.tos", U8, None),
    ("ip.ttl", U8, None),
    ("ip.totlen", U16, None),
    ("ip.ihl", U8, None),
    ("ip.csum", U16, None),
    ("ip.id", U16, None),
    ("ip.fragoff", U16, None),
    ("ip6.payloadlen", U16, None),
    ("ip6.priority", U8, None),
    ("ip6.flowlabel", U32, None),
    ("ip6.hoplimit", U8, None),
    ("ip6.nexthdr", U8, None),
    ("ip6.fragoff", U16, None),
    ("ip6.fragid", U32, None),
    ("tcp.sport", U16, Some("src_port")),
    ("tcp.dport", U16, Some("dest_port")),
    ("tcp.seq", U32, None),
    ("tcp.ackseq", U32, None),
    ("tcp.window", U16, None),
    ("tcp.offset", U8, None),
    ("tcp.reserved", U8, None),
    ("tcp.urg", Bool, None),
    ("tcp.urgp", U16, None),
    ("tcp.ack", Bool, None),
    ("tcp.psh", Bool, None),
    ("tcp.rst", Bool, None),
    ("tcp.syn", Bool, None),
    ("tcp.fin", Bool, None),
    ("tcp.res1", Bool, None),
    ("tcp.res2", Bool, None),
    ("tcp.csum", U16, None),
    ("udp.sport", U16, Some("src_port")),
    ("udp.dport", U16, Some("dest_port")),
    ("udp.len", U16, None),
    ("udp.csum", U16, None),
    ("icmp.type", U8, None),
    ("icmp.code", U8, None),
    ("icmp.echoid", U16, None),
    ("icmp.echoseq", U16, None),
    ("icmp.gateway", Ip, None),
    ("icmp.fragmtu", U16, None),
    ("icmp.csum", U16, None),
    ("icmpv6.type", U8, None),
    ("icmpv6.code", U8, None),
    ("icmpv6.echoid", U16, None),
    ("icmpv6.echoseq", U16, None),
    ("icmpv6.csum", U16, None),
    ("ahesp.spi", U32, None),
    ("oob.protocol", U16, None),
    ("arp.hwtype", U16, None),
    ("arp.protocoltype", U16, None),
    ("arp.operation", U16, None),
    ("arp.shwaddr", Raw, None),
    ("arp.saddr", Ip, None),
    ("arp.dhwaddr", Raw, None),
    ("arp.daddr", Ip, None),
    ("sctp.sport", U16, Some("src_port")),
    ("sctp.dport", U16, Some("dest_port")),
    ("sctp.csum", U32, None),
];

const IFINDEX: Table = &[("oob.in", Str, None), ("oob.out", Str, None)];

const IP2STR: Table = &[
    ("ip.saddr.str", Str, Some("src_ip")),
    ("ip.daddr.str", Str, Some("dest_ip")),
    ("orig.ip.saddr.str", Str, Some("src_ip")),
    ("orig.ip.daddr.str", Str, Some("dest_ip")),
    ("reply.ip.saddr.str", Str, None),
    ("reply.ip.daddr.str", Str, None),
    ("arp.saddr.str", Str, None),
    ("arp.daddr.str", Str, None),
];

const HWHDR: Table = &[
    ("raw.type", U16, None),
    ("oob.protocol", U16, None),
    ("mac.saddr.str", Str, None),
    ("mac.daddr.str", Str, None),
    ("mac.str", Str, None),
];

/// The stack's upstream keys, each bound to the nearest producer of its name,
/// and the slot of every (producer, key).
fn stack(
    tables: &[(&'static str, Table)],
) -> (
    Vec<UpstreamKey>,
    HashMap<(&'static str, &'static str), Slot>,
) {
    let mut slots = HashMap::new();
    let mut nearest = HashMap::new();
    let mut n: Slot = 0;
    for (p, t) in tables {
        for (name, _, _) in t.iter() {
            slots.insert((*p, *name), n);
            nearest.insert(*name, n);
            n += 1;
        }
    }
    let mut up = Vec::new();
    for (p, t) in tables {
        for &(name, ty, cim) in t.iter() {
            let mut def = KeyDef::new(name, ty);
            if let Some(c) = cim {
                def = def.cim(c);
            }
            up.push(UpstreamKey {
                def,
                slot: nearest[name],
                producer: p.to_string(),
            });
        }
    }
    (up, slots)
}

#[test]
fn ulogd_example_line_byte_for_byte_in_berlin() {
    std::env::set_var("TZ", "Europe/Berlin");
    let dir = common::temp_dir("golden");
    let file = dir.join("ulogd.json");
    let reg = SharedRegistry::default();
    let mut out = common::build(
        &reg,
        "json1",
        &[
            ("file", file.to_str().unwrap_or_default()),
            ("boolean_label", "1"),
        ],
    );
    let tables: &[(&str, Table)] = &[
        ("log1", NFLOG),
        ("base1", BASE),
        ("ifi1", IFINDEX),
        ("ip2str1", IP2STR),
        ("mac1", HWHDR),
    ];
    let (up, slots) = stack(tables);
    common::bind(&mut out, &up);

    let mut rec = Record::with_slots(slots.len());
    let mut set = |p: &'static str, k: &'static str, v: Value| rec.set(slots[&(p, k)], v);
    set("log1", "raw.pkt", Value::Raw(Default::default()));
    set("log1", "raw.pktlen", Value::U32(36));
    set("log1", "raw.pktcount", Value::U32(1));
    set("log1", "oob.prefix", Value::text(b"TESTPFX"));
    set("log1", "oob.time.sec", Value::U32(1_795_444_849));
    set("log1", "oob.time.usec", Value::U32(959_561));
    set("log1", "oob.mark", Value::U32(0));
    set("log1", "oob.ifindex_out", Value::U32(1));
    set("log1", "oob.hook", Value::U8(3));
    set("log1", "oob.family", Value::U8(2));
    set("log1", "oob.protocol", Value::U16(2048));
    set("log1", "oob.uid", Value::U32(0));
    set("log1", "oob.gid", Value::U32(0));
    set("log1", "raw.label", Value::U8(1));
    set("base1", "ip.saddr", Value::Ipv4([127, 0, 0, 1].into()));
    set("base1", "ip.daddr", Value::Ipv4([127, 0, 0, 1].into()));
    set("base1", "ip.protocol", Value::U8(17));
    set("base1", "ip.tos", Value::U8(0));
    set("base1", "ip.ttl", Value::U8(64));
    set("base1", "ip.totlen", Value::U16(36));
    set("base1", "ip.ihl", Value::U8(5));
    set("base1", "ip.csum", Value::U16(35431));
    set("base1", "ip.id", Value::U16(45663));
    set("base1", "ip.fragoff", Value::U16(16384));
    set("base1", "udp.sport", Value::U16(48806));
    set("base1", "udp.dport", Value::U16(45678));
    set("base1", "udp.len", Value::U16(16));
    set("base1", "udp.csum", Value::U16(65059));
    set("base1", "oob.protocol", Value::U16(2048));
    set("ifi1", "oob.in", Value::text(b""));
    set("ifi1", "oob.out", Value::text(b"lo"));
    set("ip2str1", "ip.saddr.str", Value::text(b"127.0.0.1"));
    set("ip2str1", "ip.daddr.str", Value::text(b"127.0.0.1"));
    set("mac1", "oob.protocol", Value::U16(2048));

    out.write(&rec).expect("write");
    out.flush().expect("flush");
    common::shutdown(&reg);

    let got = std::fs::read_to_string(&file).expect("read output");
    let want = concat!(
        r#"{"timestamp": "2026-11-23T15:40:49.959561+0100", "dvc": "Netfilter", "raw.pktlen": 36, "#,
        r#""raw.pktcount": 1, "oob.prefix": "TESTPFX", "oob.time.sec": 1795444849, "#,
        r#""oob.time.usec": 959561, "oob.mark": 0, "oob.ifindex_out": 1, "oob.hook": 3, "#,
        r#""oob.family": 2, "oob.protocol": 2048, "oob.uid": 0, "oob.gid": 0, "#,
        r#""action": "allowed", "ip.protocol": 17, "ip.tos": 0, "ip.ttl": 64, "ip.totlen": 36, "#,
        r#""ip.ihl": 5, "ip.csum": 35431, "ip.id": 45663, "ip.fragoff": 16384, "#,
        r#""src_port": 48806, "dest_port": 45678, "udp.len": 16, "udp.csum": 65059, "#,
        r#""oob.in": "", "oob.out": "lo", "src_ip": "127.0.0.1", "dest_ip": "127.0.0.1"}"#,
        "\n"
    );
    assert_eq!(got, want);

    // Same instant in summer and in a zone with a half-hour offset, and the
    // UTC quirk (no suffix at all), through the same formatter.
    let mut ts = rulogd_output::json::Timestamper::new(rulogd_output::json::TsFormat::Ulogd);
    assert_eq!(
        ts.render(Some(1_782_216_000), None),
        Some(&b"2026-06-23T14:00:00+0200"[..])
    );
    std::env::set_var("TZ", "UTC");
    tzset();
    let mut ts = rulogd_output::json::Timestamper::new(rulogd_output::json::TsFormat::Ulogd);
    assert_eq!(
        ts.render(Some(1_795_444_862), None),
        Some(&b"2026-11-23T14:41:02"[..])
    );
    std::env::set_var("TZ", "Asia/Kolkata");
    tzset();
    let mut ts = rulogd_output::json::Timestamper::new(rulogd_output::json::TsFormat::Ulogd);
    assert_eq!(
        ts.render(Some(1_795_444_849), Some(7)),
        Some(&b"2026-11-23T20:10:49.000007+0530"[..])
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn tzset() {
    extern "C" {
        fn tzset();
    }
    // SAFETY: re-reads TZ; this test runs alone in its process.
    unsafe { tzset() }
}
