//! NFCT tests that need no privileges: hand-built ctnetlink messages go
//! through the parser, the record filler and the three modes' logic.

use super::*;
use crate::testutil::options;
pub(super) use crate::testutil::{get, Collect, V};
use rulogd_netlink::conntrack::{
    cta, dump_request, get_request, messages, nested, parse_conntrack, tuple, Counters, Message,
    MSG_DELETE, MSG_NEW, NLM_F_CREATE, NLM_F_EXCL,
};
use rulogd_netlink::{finish_msg, put_attr, start_msg, NlHeader, ParseError};

const NESTED: u16 = 0x8000;

/// What a hand-built entry message carries.
#[derive(Clone, Copy)]
pub(super) struct Spec {
    pub kind: u16,
    pub flags: u16,
    pub family: u8,
    pub orig: Tuple,
    pub reply: Tuple,
    pub counters: Option<[Counters; 2]>,
    pub start_ns: Option<u64>,
    pub stop_ns: Option<u64>,
    pub mark: u32,
    pub id: u32,
}

pub(super) fn udp4(sport: u16) -> Spec {
    let mut o = Tuple {
        proto: 17,
        sport,
        dport: 53,
        ..Tuple::default()
    };
    o.src[..4].copy_from_slice(&[10, 0, 0, 1]);
    o.dst[..4].copy_from_slice(&[10, 0, 0, 2]);
    let mut r = o;
    std::mem::swap(&mut r.src, &mut r.dst);
    (r.sport, r.dport) = (o.dport, o.sport);
    Spec {
        kind: MSG_NEW,
        flags: NLM_F_CREATE | NLM_F_EXCL,
        family: libc::AF_INET as u8,
        orig: o,
        reply: r,
        counters: None,
        start_ns: None,
        stop_ns: None,
        mark: 7,
        id: 0xdead_beef,
    }
}

fn put_tuple(out: &mut Vec<u8>, kind: u16, family: u8, t: &Tuple) {
    let mut ip = Vec::new();
    if family == libc::AF_INET6 as u8 {
        put_attr(&mut ip, tuple::IP_V6_SRC, &t.src);
        put_attr(&mut ip, tuple::IP_V6_DST, &t.dst);
    } else {
        put_attr(&mut ip, tuple::IP_V4_SRC, &t.src[..4]);
        put_attr(&mut ip, tuple::IP_V4_DST, &t.dst[..4]);
    }
    let mut p = Vec::new();
    put_attr(&mut p, tuple::PROTO_NUM, &[t.proto]);
    match t.proto {
        1 => {
            put_attr(&mut p, tuple::PROTO_ICMP_ID, &t.icmp_id.to_be_bytes());
            put_attr(&mut p, tuple::PROTO_ICMP_TYPE, &[t.icmp_type]);
            put_attr(&mut p, tuple::PROTO_ICMP_CODE, &[t.icmp_code]);
        }
        58 => {
            put_attr(&mut p, tuple::PROTO_ICMPV6_ID, &t.icmp_id.to_be_bytes());
            put_attr(&mut p, tuple::PROTO_ICMPV6_TYPE, &[t.icmp_type]);
            put_attr(&mut p, tuple::PROTO_ICMPV6_CODE, &[t.icmp_code]);
        }
        _ => {
            put_attr(&mut p, tuple::PROTO_SRC_PORT, &t.sport.to_be_bytes());
            put_attr(&mut p, tuple::PROTO_DST_PORT, &t.dport.to_be_bytes());
        }
    }
    let mut body = Vec::new();
    put_attr(&mut body, tuple::IP | NESTED, &ip);
    put_attr(&mut body, tuple::PROTO | NESTED, &p);
    put_attr(out, kind | NESTED, &body);
}

/// Appends one entry message as the kernel writes it.
pub(super) fn entry(out: &mut Vec<u8>, s: &Spec) {
    let start = start_msg(out, s.kind, s.flags, 0);
    out.extend_from_slice(&[s.family, 0, 0, 0]);
    put_tuple(out, cta::TUPLE_ORIG, s.family, &s.orig);
    put_tuple(out, cta::TUPLE_REPLY, s.family, &s.reply);
    put_attr(out, cta::STATUS, &0x18eu32.to_be_bytes());
    put_attr(out, cta::MARK, &s.mark.to_be_bytes());
    if let Some(c) = s.counters {
        for (k, c) in [(cta::COUNTERS_ORIG, c[0]), (cta::COUNTERS_REPLY, c[1])] {
            let mut n = Vec::new();
            put_attr(&mut n, nested::COUNTERS_PACKETS, &c.packets.to_be_bytes());
            put_attr(&mut n, nested::COUNTERS_BYTES, &c.bytes.to_be_bytes());
            put_attr(out, k | NESTED, &n);
        }
    }
    if s.start_ns.is_some() || s.stop_ns.is_some() {
        let mut n = Vec::new();
        if let Some(t) = s.start_ns {
            put_attr(&mut n, nested::TIMESTAMP_START, &t.to_be_bytes());
        }
        if let Some(t) = s.stop_ns {
            put_attr(&mut n, nested::TIMESTAMP_STOP, &t.to_be_bytes());
        }
        put_attr(out, cta::TIMESTAMP | NESTED, &n);
    }
    put_attr(out, cta::ID, &s.id.to_be_bytes());
    finish_msg(out, start);
}

pub(super) fn msg(s: &Spec) -> Vec<u8> {
    let mut v = Vec::new();
    entry(&mut v, s);
    v
}

fn int(snap: &[(&'static str, V)], key: &str) -> Option<u64> {
    match get(snap, key) {
        Some(V::Int(n)) => Some(n),
        _ => None,
    }
}

pub(super) fn settings(opts: &[(&str, &str)]) -> Result<Settings, BuildError> {
    Settings::from_options(&options(&OPTIONS, opts))
}

/// An input without an event socket, fed datagrams by hand.
fn input(opts: &[(&str, &str)]) -> NfctInput {
    let s = settings(opts).expect("settings");
    let q = Querier::open().expect("netlink socket");
    NfctInput::with_sockets("ct1", s, None, q, &StatSet::new("t"))
}

fn feed(inp: &mut NfctInput, em: &mut Collect, m: Vec<u8>) {
    inp.on_datagram(&Bytes::from(m), em);
}

#[test]
fn parses_every_attribute_of_an_entry() {
    let mut s = udp4(4000);
    s.counters = Some([
        Counters {
            packets: 3,
            bytes: 180,
        },
        Counters {
            packets: 2,
            bytes: 100,
        },
    ]);
    s.start_ns = Some(1_700_000_000_123_456_789);
    s.stop_ns = Some(1_700_000_001_000_999_000);
    let m = msg(&s);
    let ct = parse_conntrack(&m).expect("parses");
    assert_eq!(ct.event, CtEvent::New);
    assert_eq!(ct.family, 2);
    assert_eq!(ct.orig, Some(s.orig));
    assert_eq!(ct.reply, Some(s.reply));
    assert_eq!(ct.mark, Some(7));
    assert_eq!(ct.id, Some(0xdead_beef));
    assert_eq!(ct.status, Some(0x18e));
    assert_eq!(ct.counters_orig.map(|c| c.bytes), Some(180));
    assert_eq!(ct.counters_reply.map(|c| c.packets), Some(2));
    assert_eq!(
        ns_to_sec_usec(ct.start_ns.unwrap()),
        (1_700_000_000, 123_456)
    );
    assert_eq!(ct.attrs.off as usize, 20);
    assert_eq!((ct.attrs.off + ct.attrs.len) as usize, m.len());
    // Event kinds from type and flags.
    s.flags = 0;
    assert_eq!(parse_conntrack(&msg(&s)).unwrap().event, CtEvent::Update);
    s.kind = MSG_DELETE;
    assert_eq!(parse_conntrack(&msg(&s)).unwrap().event, CtEvent::Destroy);
}

#[test]
fn malformed_messages_are_errors_never_panics() {
    let m = msg(&udp4(1));
    // Every truncation and every single-byte corruption: no panic, and a
    // message whose length no longer fits is an error.
    for cut in 0..m.len() {
        let _ = parse_conntrack(&m[..cut]);
        let _ = messages(&m[..cut]).count();
    }
    for i in 0..m.len() {
        for b in [0u8, 1, 3, 0x7f, 0xff] {
            let mut x = m.clone();
            x[i] = b;
            for r in messages(&x) {
                let _ = r;
            }
        }
    }
    // An address attribute one byte short.
    let mut bad = Vec::new();
    let start = start_msg(&mut bad, MSG_NEW, 0, 0);
    bad.extend_from_slice(&[2, 0, 0, 0]);
    let mut ip = Vec::new();
    put_attr(&mut ip, tuple::IP_V4_SRC, &[1, 2, 3]);
    let mut t = Vec::new();
    put_attr(&mut t, tuple::IP | NESTED, &ip);
    put_attr(&mut bad, cta::TUPLE_ORIG | NESTED, &t);
    finish_msg(&mut bad, start);
    assert!(matches!(
        parse_conntrack(&bad),
        Err(ParseError::AttributeTooShort { need: 4, .. })
    ));
    let h = NlHeader::parse(&bad, 0).unwrap();
    assert_eq!(h.len as usize, bad.len());
}

#[test]
fn records_follow_ulogd_validity_rules() {
    let mut inp = input(&[("hash_enable", "0")]);
    let mut em = Collect::new(&KEYS);
    // TCP with kernel times on DESTROY: both times from the kernel.
    let mut s = udp4(5555);
    s.orig.proto = 6;
    s.reply.proto = 6;
    s.kind = MSG_DELETE;
    s.flags = 0;
    s.start_ns = Some(1_700_000_000_000_001_000);
    s.stop_ns = Some(1_700_000_002_500_000_000);
    feed(&mut inp, &mut em, msg(&s));
    let r = &em.out[0];
    assert_eq!(get(r, "orig.ip.saddr"), Some(V::Addr("10.0.0.1".into())));
    assert_eq!(get(r, "reply.ip.saddr"), Some(V::Addr("10.0.0.2".into())));
    assert_eq!(int(r, "orig.l4.sport"), Some(5555));
    assert_eq!(int(r, "reply.l4.dport"), Some(5555));
    assert_eq!(
        int(r, "orig.raw.pktlen"),
        Some(0),
        "counters valid even without acct"
    );
    assert_eq!(int(r, "ct.event"), Some(4));
    assert_eq!(int(r, "ct.mark"), Some(7));
    assert_eq!(int(r, "flow.start.sec"), Some(1_700_000_000));
    assert_eq!(int(r, "flow.start.usec"), Some(1));
    assert_eq!(int(r, "flow.end.usec"), Some(500_000));
    assert_eq!(int(r, "oob.protocol"), Some(0));
    assert!(get(r, "icmp.type").is_none());
    assert!(matches!(get(r, "ct"), Some(V::Bytes(b)) if !b.is_empty()));
    // DESTROY without kernel times: end = now, no start.
    s.start_ns = None;
    s.stop_ns = None;
    feed(&mut inp, &mut em, msg(&s));
    let r = &em.out[1];
    assert!(get(r, "flow.start.sec").is_none());
    assert!(int(r, "flow.end.sec").unwrap() > 1_600_000_000);
    // ICMP: type and code, no ports; ICMPv6: the icmpv6 pair (2.0.9).
    let mut icmp = udp4(0);
    icmp.orig = Tuple {
        proto: 1,
        icmp_type: 8,
        icmp_code: 0,
        icmp_id: 77,
        ..icmp.orig
    };
    icmp.reply = Tuple {
        proto: 1,
        icmp_type: 0,
        ..icmp.orig
    };
    feed(&mut inp, &mut em, msg(&icmp));
    let r = &em.out[2];
    assert_eq!(
        (int(r, "icmp.type"), int(r, "icmp.code")),
        (Some(8), Some(0))
    );
    assert!(get(r, "orig.l4.sport").is_none() && get(r, "reply.l4.sport").is_none());
    assert!(int(r, "flow.start.sec").is_some() && get(r, "flow.end.sec").is_none());
    let mut v6 = icmp;
    v6.family = libc::AF_INET6 as u8;
    v6.orig.proto = 58;
    v6.reply.proto = 58;
    v6.orig.icmp_type = 128;
    v6.orig.src = std::net::Ipv6Addr::LOCALHOST.octets();
    feed(&mut inp, &mut em, msg(&v6));
    let r = &em.out[3];
    assert_eq!(int(r, "icmpv6.type"), Some(128));
    assert!(get(r, "icmp.type").is_none());
    assert_eq!(get(r, "orig.ip.saddr"), Some(V::Addr("::1".into())));
    assert_eq!(int(r, "oob.family"), Some(10));
    // An unknown family: no addresses (ulogd: "Unknown protocol family").
    let mut odd = udp4(9);
    odd.family = 7;
    feed(&mut inp, &mut em, msg(&odd));
    assert!(get(&em.out[4], "orig.ip.saddr").is_none());
    // UPDATE without the table: not logged.
    let mut up = udp4(9);
    up.flags = 0;
    feed(&mut inp, &mut em, msg(&up));
    assert_eq!(em.out.len(), 5);
    assert_eq!(inp.stats.unsupported.get(), 1);
}

#[test]
fn hash_mode_logs_destroy_with_the_start_it_noted() {
    let mut inp = input(&[]);
    let mut em = Collect::new(&KEYS);
    let s = udp4(1000);
    feed(&mut inp, &mut em, msg(&s));
    assert!(em.out.is_empty(), "NEW only fills the table");
    let noted = inp
        .table
        .as_mut()
        .unwrap()
        .get_mut(&FlowKey::of(&parse_conntrack(&msg(&s)).unwrap()))
        .unwrap()
        .start;
    // An UPDATE refreshes counters; the DESTROY carries its own.
    let mut up = s;
    up.flags = 0;
    up.counters = Some(
        [Counters {
            packets: 1,
            bytes: 10,
        }; 2],
    );
    feed(&mut inp, &mut em, msg(&up));
    let mut d = s;
    d.kind = MSG_DELETE;
    d.flags = 0;
    d.counters = Some([
        Counters {
            packets: 4,
            bytes: 40,
        },
        Counters {
            packets: 3,
            bytes: 30,
        },
    ]);
    d.stop_ns = Some(1_800_000_000_000_000_000);
    feed(&mut inp, &mut em, msg(&d));
    assert_eq!(em.out.len(), 1);
    let r = &em.out[0];
    assert_eq!(int(r, "ct.event"), Some(4));
    assert_eq!(int(r, "flow.start.sec"), Some(u64::from(noted.0)));
    assert_eq!(int(r, "flow.start.usec"), Some(u64::from(noted.1)));
    assert_eq!(int(r, "flow.end.sec"), Some(1_800_000_000));
    assert_eq!(int(r, "orig.raw.pktcount"), Some(4));
    assert_eq!(int(r, "reply.raw.pktlen"), Some(30));
    assert!(inp.table.as_ref().unwrap().is_empty());
    // A DESTROY for a flow never seen: logged without a start.
    let mut other = d;
    other.orig.sport = 2000;
    feed(&mut inp, &mut em, msg(&other));
    assert!(get(&em.out[1], "flow.start.sec").is_none());
}

#[test]
fn the_table_is_bounded() {
    let mut inp = input(&[("hash_max_entries", "2"), ("hash_buckets", "8192")]);
    let mut em = Collect::new(&KEYS);
    for port in [1, 2, 3] {
        feed(&mut inp, &mut em, msg(&udp4(port)));
    }
    assert_eq!(inp.table.as_ref().unwrap().len(), 2);
    assert_eq!(inp.stats.table_full.get(), 1);
    let mut d = udp4(3);
    d.kind = MSG_DELETE;
    d.flags = 0;
    feed(&mut inp, &mut em, msg(&d));
    assert!(get(&em.out[0], "flow.start.sec").is_none());
    // The same orig tuple again (its DESTROY was lost): replaced, not added.
    feed(&mut inp, &mut em, msg(&udp4(1)));
    assert_eq!(inp.stats.replaced.get(), 1);
    assert_eq!(inp.table.as_ref().unwrap().len(), 2);
}

#[test]
fn memory_per_flow() {
    // The entry size drives the table's memory: one slot plus one control
    // byte per bucket, buckets kept at most 7/8 full.
    let entry = std::mem::size_of::<(FlowKey, Flow)>();
    assert!(entry <= 144, "flow entry grew to {entry} bytes");
    let mut t = FlowTable::new(16, 100_000);
    let mut s = udp4(0);
    for i in 0..50_000u32 {
        s.orig.sport = i as u16;
        s.orig.src[2] = (i >> 16) as u8;
        let ct = parse_conntrack(&msg(&s)).unwrap();
        t.insert(FlowKey::of(&ct), Flow::new(&ct, (1, 0), 0));
    }
    let per_flow = t.memory_bytes() / t.len();
    eprintln!(
        "flow table: {} flows, {} bytes, {per_flow} bytes/flow",
        t.len(),
        t.memory_bytes()
    );
    assert!(per_flow < 2 * (entry + 1) + 1, "{per_flow} bytes per flow");
}

#[test]
fn accept_filters() {
    let mut inp = input(&[
        ("hash_enable", "0"),
        ("accept_src_filter", "10.0.0.0/24"),
        ("accept_proto_filter", "udp"),
    ]);
    let mut em = Collect::new(&KEYS);
    feed(&mut inp, &mut em, msg(&udp4(1)));
    let mut tcp = udp4(2);
    tcp.orig.proto = 6;
    feed(&mut inp, &mut em, msg(&tcp));
    let mut far = udp4(3);
    far.orig.src[..4].copy_from_slice(&[10, 0, 1, 1]);
    feed(&mut inp, &mut em, msg(&far));
    // IPv4 networks only: every IPv6 flow is rejected, as in ulogd.
    let mut v6 = udp4(4);
    v6.family = 10;
    feed(&mut inp, &mut em, msg(&v6));
    assert_eq!(em.out.len(), 1);
    assert_eq!(inp.stats.filtered.get(), 3);

    let f = AddrFilter::parse("x", "192.168.1.77/24, fd00::1/64").unwrap();
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[192, 168, 1, 200]);
    assert!(f.accepts(2, &a));
    a[2] = 2;
    assert!(!f.accepts(2, &a));
    let mut b = "fd00::ffff:1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    assert!(f.accepts(10, &b));
    b[7] = 1;
    assert!(!f.accepts(10, &b));
    assert!(AddrFilter::parse("x", "1.2.3.0/4")
        .unwrap()
        .accepts(2, &[1; 16]));
    assert!(AddrFilter::parse("x", "0.0.0.0/0")
        .unwrap()
        .accepts(2, &[9; 16]));
    for bad in [
        "10.0.0.0",
        "10.0.0.0/33",
        "fd00::/129",
        "nonsense/8",
        "1.2.3.4/x",
    ] {
        assert!(AddrFilter::parse("x", bad).is_err(), "{bad}");
    }
    assert_eq!(
        setup::parse_protos("tcp, 17 ,icmp").unwrap(),
        vec![6, 17, 1]
    );
    assert!(setup::parse_protos("nosuchproto").is_err());
}

#[test]
fn option_checks() {
    let e = settings(&[("pollinterval", "5"), ("hash_enable", "0")]).unwrap_err();
    assert!(e.to_string().contains("requires the hashtable"), "{e}");
    assert!(settings(&[("hash_max_entries", "0")]).is_err());
    assert!(settings(&[("accept_dst_filter", "10.1.1.1")]).is_err());
    let s = settings(&[("event_mask", "0xff"), ("hash_buckets", "99999")]).unwrap();
    assert_eq!(s.event_mask, 7);
    assert_eq!(s.buckets, 32768, "capped at hash_max_entries");
    assert_eq!(INFO.options.len(), 14);
    assert_eq!(INFO.output_keys.len(), NKEYS);
}

#[test]
fn requests_encode_what_the_kernel_expects() {
    let mut d = Vec::new();
    dump_request(&mut d, 9, true);
    let h = NlHeader::parse(&d, 0).unwrap();
    assert_eq!((h.kind, h.flags, h.seq, d.len()), (0x103, 0x301, 9, 20));
    // A get request's tuple parses back to the same tuple.
    let s = udp4(4242);
    let mut g = Vec::new();
    get_request(&mut g, 3, 2, &s.orig, 0);
    let h = NlHeader::parse(&g, 0).unwrap();
    assert_eq!((h.kind, h.flags & 0xff), (0x101, 0x05));
    let back = rulogd_netlink::conntrack::parse_conntrack_at(&g, &h).unwrap();
    assert_eq!(back.orig, Some(s.orig));
    // Errors and DONE in a receive buffer.
    let mut buf = Vec::new();
    let st = start_msg(&mut buf, rulogd_netlink::NLMSG_DONE, 2, 9);
    buf.extend_from_slice(&[0; 4]);
    finish_msg(&mut buf, st);
    let ms: Vec<_> = messages(&buf).collect();
    assert_eq!(ms, vec![Ok((Message::Done { seq: 9 }, 9))]);
}

/// Every file of the fuzz corpus parses without panicking, spans stay in
/// the buffer, and the captured kernel datagrams parse cleanly.
#[test]
fn replays_the_fuzz_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/corpus/nfct");
    let rd =
        std::fs::read_dir(&dir).unwrap_or_else(|_| panic!("corpus missing at {}", dir.display()));
    let mut n = 0;
    let mut inp = input(&[("hash_enable", "0"), ("event_mask", "7")]);
    let mut em = Collect::new(&KEYS);
    for e in rd.flatten() {
        let data = std::fs::read(e.path()).expect("readable corpus file");
        for (m, _) in messages(&data).flatten() {
            if let Message::Entry(ct) = m {
                assert!((ct.attrs.off + ct.attrs.len) as usize <= data.len());
            }
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("kernel-") || name.starts_with("hand-") {
            assert!(
                messages(&data).all(|m| m.is_ok()),
                "{} has a malformed message",
                e.path().display()
            );
        }
        feed(&mut inp, &mut em, data);
        n += 1;
    }
    assert!(n > 0, "empty corpus at {}", dir.display());
}

/// Writes the hand-made seeds (run with `RULOGD_NFCT_SEEDS=<dir>`).
#[test]
fn write_hand_seeds() {
    let Ok(dir) = std::env::var("RULOGD_NFCT_SEEDS") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    let mut s = udp4(1234);
    s.counters = Some(
        [Counters {
            packets: 5,
            bytes: 500,
        }; 2],
    );
    s.start_ns = Some(1_700_000_000_000_000_000);
    s.stop_ns = Some(1_700_000_009_000_000_000);
    s.kind = MSG_DELETE;
    std::fs::write(dir.join("hand-destroy-udp4.bin"), msg(&s)).unwrap();
    let mut v6 = udp4(0);
    v6.family = 10;
    v6.orig.proto = 58;
    v6.orig.icmp_type = 128;
    v6.reply.proto = 58;
    let mut two = msg(&v6);
    entry(&mut two, &s);
    std::fs::write(dir.join("hand-two-entries.bin"), two).unwrap();
    let mut d = Vec::new();
    dump_request(&mut d, 1, false);
    std::fs::write(dir.join("hand-dump-request.bin"), d).unwrap();
}
