use super::*;
use crate::testutil::{try_build, Harness};
use rulogd_plugin::SharedRegistry;
use std::net::{Ipv4Addr, UdpSocket};

const KEYS: [(&str, KeyType); 14] = [
    ("orig.ip.saddr", KeyType::IpAddr),
    ("orig.ip.daddr", KeyType::IpAddr),
    ("orig.raw.pktcount", KeyType::U64),
    ("orig.raw.pktlen", KeyType::U64),
    ("reply.raw.pktcount", KeyType::U64),
    ("reply.raw.pktlen", KeyType::U64),
    ("flow.start.sec", KeyType::U32),
    ("flow.start.usec", KeyType::U32),
    ("flow.end.sec", KeyType::U32),
    ("flow.end.usec", KeyType::U32),
    ("orig.l4.sport", KeyType::U16),
    ("orig.l4.dport", KeyType::U16),
    ("orig.ip.protocol", KeyType::U8),
    ("ct.mark", KeyType::U32),
];

fn set_flow(h: &mut Harness, i: u32) {
    h.set("orig.ip.saddr", Value::Ipv4(Ipv4Addr::new(10, 0, 0, 1)))
        .set("orig.ip.daddr", Value::Ipv4(Ipv4Addr::new(10, 0, 0, 2)))
        .set("orig.raw.pktcount", Value::U64(2))
        .set("orig.raw.pktlen", Value::U64(100))
        .set("reply.raw.pktcount", Value::U64(1))
        .set("reply.raw.pktlen", Value::U64(60))
        .set("flow.start.sec", Value::U32(1_700_000_000 + i))
        .set("flow.start.usec", Value::U32(250_000))
        .set("flow.end.sec", Value::U32(1_700_000_010 + i))
        .set("flow.end.usec", Value::U32(999))
        .set("orig.l4.sport", Value::U16(40000 + i as u16))
        .set("orig.l4.dport", Value::U16(53))
        .set("orig.ip.protocol", Value::U8(17))
        .set("ct.mark", Value::U32(0));
}

fn recv_all(s: &UdpSocket) -> Vec<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.recv(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

fn be32(m: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(m[at..at + 4].try_into().unwrap())
}

#[test]
fn udp_templates_first_then_numbered_messages_within_the_mtu() {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port().to_string();
    let opts = [
        ("host", "127.0.0.1"),
        ("port", port.as_str()),
        ("proto", "udp"),
        ("oid", "42"),
        ("biflow", "0"),
    ];
    let mut h = Harness::new(REGISTRATION, &opts, &KEYS);
    // 20 flows, two records each, 55 bytes: 8 records per 512-byte message.
    for i in 0..20 {
        set_flow(&mut h, i);
        h.write();
    }
    h.stop();
    let msgs = recv_all(&s);
    let sizes: Vec<usize> = msgs.iter().map(|m| m.len()).collect();
    assert_eq!(
        msgs.len(),
        1 + 5,
        "template message then five data messages: {sizes:?}"
    );
    let t = &msgs[0];
    assert_eq!(&t[16..18], &[0, 2], "a template set first");
    assert_eq!(encode::data_records(t), 0);
    let mut expect_seq = 0;
    let mut records = 0;
    for m in &msgs {
        assert!(m.len() <= 512);
        assert_eq!(&m[..2], &[0, 10]);
        assert_eq!(be32(m, 12), 42, "observation domain");
        assert_eq!(be32(m, 8), expect_seq, "sequence = data records before");
        expect_seq += encode::data_records(m);
        records += encode::data_records(m);
    }
    assert_eq!(records, 40);
    // The first data record: the original direction, times in ms.
    let d = &msgs[1];
    assert_eq!(&d[16..18], &encode::TID_V4_UNI.to_be_bytes());
    let r = &d[20..];
    assert_eq!(&r[..8], &[10, 0, 0, 1, 10, 0, 0, 2]);
    assert_eq!(&r[8..13], &[0x9c, 0x40, 0, 53, 17]);
    assert_eq!(u64::from_be_bytes(r[13..21].try_into().unwrap()), 100);
    assert_eq!(u64::from_be_bytes(r[21..29].try_into().unwrap()), 2);
    let start = u64::from_be_bytes(r[29..37].try_into().unwrap());
    assert_eq!(start, 1_700_000_000_250);
    // Then the reply direction, reversed.
    let r2 = &r[55..];
    assert_eq!(
        &r2[..13],
        &[10, 0, 0, 2, 10, 0, 0, 1, 0, 53, 0x9c, 0x40, 17]
    );
    assert_eq!(u64::from_be_bytes(r2[13..21].try_into().unwrap()), 60);
}

#[test]
fn ulogd_rules_for_oid_host_and_proto() {
    let shared = SharedRegistry::default();
    let bad: [&[(&str, &str)]; 3] = [
        &[("host", "127.0.0.1"), ("proto", "udp")],
        &[("oid", "1"), ("proto", "udp"), ("host", "")],
        &[("oid", "1"), ("host", "127.0.0.1"), ("mtu", "0")],
    ];
    for opts in bad {
        assert!(try_build(REGISTRATION, opts, &shared).is_err(), "{opts:?}");
    }
    let ok = [("oid", "1"), ("host", "127.0.0.1"), ("proto", "udp")];
    assert!(try_build(REGISTRATION, &ok, &shared).is_ok());
    // A small ulogd mtu still runs, raised to what the templates need.
    let small = [
        ("oid", "1"),
        ("host", "127.0.0.1"),
        ("mtu", "60"),
        ("proto", "udp"),
    ];
    assert!(try_build(REGISTRATION, &small, &shared).is_ok());
    assert_eq!(TemplateMode::parse("always"), TemplateMode::Always);
    assert_eq!(TemplateMode::parse("once"), TemplateMode::Once);
}

/// Template sets (set id 2) in each received datagram.
fn has_templates(msgs: &[Vec<u8>]) -> Vec<bool> {
    msgs.iter().map(|m| m[16..18] == [0, 2]).collect()
}

fn udp_harness(extra: &[(&str, &str)]) -> (UdpSocket, Harness) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port().to_string();
    let mut opts = vec![
        ("host", "127.0.0.1"),
        ("port", port.as_str()),
        ("proto", "udp"),
        ("oid", "1"),
    ];
    opts.extend_from_slice(extra);
    let h = Harness::new(REGISTRATION, &opts, &KEYS);
    (s, h)
}

/// Writes one flow and hands its message to the writer at once.
fn one(h: &mut Harness, i: u32) {
    set_flow(h, i);
    h.write();
    h.out.as_mut().unwrap().flush().unwrap();
}

#[test]
fn udp_templates_again_after_template_refresh_and_as_send_template_says() {
    let (s, mut h) = udp_harness(&[("template_refresh", "1")]);
    one(&mut h, 0);
    one(&mut h, 1);
    std::thread::sleep(Duration::from_millis(1100));
    one(&mut h, 2);
    h.stop();
    let msgs = recv_all(&s);
    assert_eq!(has_templates(&msgs), [true, false, false, true, false]);
    // The template message after the refresh carries the next sequence number.
    assert_eq!(be32(&msgs[3], 8), 2);
    assert_eq!(be32(&msgs[4], 8), 2);

    let (s, mut h) = udp_harness(&[("send_template", "always")]);
    one(&mut h, 0);
    one(&mut h, 1);
    h.stop();
    assert_eq!(has_templates(&recv_all(&s)), [true, false, true, false]);

    let (s, mut h) = udp_harness(&[("send_template", "never")]);
    one(&mut h, 0);
    one(&mut h, 1);
    h.stop();
    assert_eq!(has_templates(&recv_all(&s)), [false, false]);
}
