use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn flow4() -> Flow {
    Flow {
        src: Ipv4Addr::new(10, 0, 0, 1).into(),
        dst: Ipv4Addr::new(10, 0, 0, 2).into(),
        sport: 1234,
        dport: 80,
        proto: 6,
        bytes: 0x0102,
        pkts: 3,
        rev_bytes: 0x0405,
        rev_pkts: 6,
        start_ms: 1_700_000_000_123,
        end_ms: 1_700_000_001_456,
        icmp: 0,
        id: 0x0a0b,
    }
}

#[test]
fn the_ipv4_biflow_template_as_rfc_7011_and_5103_lay_it_out() {
    let s = template_set(&[TID_V4_BIFLOW]);
    let mut want: Vec<u8> = vec![0, 2, 0, 68, 1, 0, 0, 13];
    for (id, len) in [
        (8u16, 4u16),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (1, 8),
        (2, 8),
    ] {
        want.extend_from_slice(&id.to_be_bytes());
        want.extend_from_slice(&len.to_be_bytes());
    }
    want.extend_from_slice(&[0, 152, 0, 8, 0, 153, 0, 8, 0, 32, 0, 2, 0, 148, 0, 8]);
    // Enterprise bit, IE 1 and 2, length 8, PEN 29305 (0x7279).
    want.extend_from_slice(&[0x80, 1, 0, 8, 0, 0, 0x72, 0x79]);
    want.extend_from_slice(&[0x80, 2, 0, 8, 0, 0, 0x72, 0x79]);
    assert_eq!(s, want);
    assert_eq!(record_len(TID_V4_BIFLOW), Some(71));
    assert_eq!(record_len(TID_V6_BIFLOW), Some(95));
    assert_eq!(record_len(TID_V4_UNI), Some(55));
    assert_eq!(record_len(TID_V6_UNI), Some(79));
    assert_eq!(record_len(2), None);
    // Two templates in one set: one header, both records.
    let both = template_set(&templates(false));
    assert_eq!(&both[..4], &[0, 2, 0, 4 + 2 * 48]);
    assert_eq!(&both[4..8], &[1, 2, 0, 11]);
    assert_eq!(&both[52..56], &[1, 3, 0, 11]);
    assert_eq!(&both[56..60], &[0, 27, 0, 16]);
}

#[test]
fn a_data_record_byte_by_byte() {
    let mut out = Vec::new();
    put_record(&mut out, TID_V4_BIFLOW, &flow4());
    let mut want = vec![10, 0, 0, 1, 10, 0, 0, 2, 0x04, 0xd2, 0, 80, 6];
    want.extend_from_slice(&0x0102u64.to_be_bytes());
    want.extend_from_slice(&3u64.to_be_bytes());
    want.extend_from_slice(&1_700_000_000_123u64.to_be_bytes());
    want.extend_from_slice(&1_700_000_001_456u64.to_be_bytes());
    want.extend_from_slice(&[0, 0]);
    want.extend_from_slice(&0x0a0bu64.to_be_bytes());
    want.extend_from_slice(&0x0405u64.to_be_bytes());
    want.extend_from_slice(&6u64.to_be_bytes());
    assert_eq!(out, want);
    out.clear();
    let f6 = Flow {
        src: Ipv6Addr::LOCALHOST.into(),
        dst: "2001:db8::2".parse().unwrap(),
        proto: 58,
        icmp: 128 << 8,
        ..flow4()
    };
    assert_eq!(template_for(&f6, false), TID_V6_UNI);
    put_record(&mut out, TID_V6_UNI, &f6);
    assert_eq!(out.len(), 79);
    assert_eq!(&out[..16], &Ipv6Addr::LOCALHOST.octets());
    assert_eq!(&out[32..37], &[0x04, 0xd2, 0, 80, 58]);
    assert_eq!(&out[69..71], &[128, 0]);
    assert_eq!(&out[71..79], &0x0a0bu64.to_be_bytes());
}

#[test]
fn messages_stay_within_the_mtu_and_sets_follow_the_family() {
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    let mut b = MessageBuilder::new(512, 7);
    let f6 = Flow {
        src: Ipv6Addr::LOCALHOST.into(),
        dst: Ipv6Addr::LOCALHOST.into(),
        ..flow4()
    };
    // 16 + 4 + 6 * 71 = 446; a seventh (517) does not fit in 512.
    for _ in 0..7 {
        b.push(TID_V4_BIFLOW, &flow4(), &mut |m| msgs.push(m.to_vec()));
    }
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].len(), 16 + 4 + 6 * 71);
    assert_eq!(&msgs[0][..4], &[0, 10, 0x01, 0xbe]);
    assert_eq!(&msgs[0][12..16], &7u32.to_be_bytes());
    assert_eq!(&msgs[0][16..20], &[1, 0, 0x01, 0xae]);
    assert_eq!(data_records(&msgs[0]), 6);
    // The seventh v4 record, then an IPv6 one: a second set in the message.
    b.push(TID_V6_BIFLOW, &f6, &mut |m| msgs.push(m.to_vec()));
    b.finish(&mut |m| msgs.push(m.to_vec()));
    assert_eq!(msgs.len(), 2);
    let m = &msgs[1];
    assert_eq!(m.len(), 16 + 4 + 71 + 4 + 95);
    assert_eq!(&m[16..20], &[1, 0, 0, 75]);
    assert_eq!(&m[91..95], &[1, 1, 0, 99]);
    assert_eq!(data_records(m), 2);
    // Nothing pending: finish sends nothing.
    b.finish(&mut |m| msgs.push(m.to_vec()));
    assert_eq!(msgs.len(), 2);
    for m in &msgs {
        assert!(m.len() <= 512);
        assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, m.len());
    }
}

#[test]
fn restamping_sets_time_and_sequence() {
    let mut m = vec![0u8; 20];
    put_header(&mut m, 1, 2, 3);
    assert_eq!(m[..16], [0, 10, 0, 20, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
    restamp(&mut m, 0x0a0b0c0d, 99);
    assert_eq!(m[4..12], [10, 11, 12, 13, 0, 0, 0, 99]);
    // A template-only message counts no data records.
    let mut t = vec![0u8; 16];
    t.extend_from_slice(&template_set(&templates(true)));
    let n = t.len();
    put_header(&mut t, 0, 0, 1);
    assert_eq!(n, 16 + 4 + 2 * 64);
    assert_eq!(data_records(&t), 0);
}
