//! Parser tests over hand-built messages and the fuzz corpus.
//!
//! Header fields of netlink are host order; these arrays are written for a
//! little-endian host, as CI runs.

use super::nflog::{
    config_request, messages, parse_packet, Config, HwAddr, Message, NflogPacket, PacketHdr,
    MSG_PACKET,
};
use super::{finish_msg, put_attr, start_msg, ParseError, NLMSG_DONE, NLM_F_MULTI};
use rulogd_plugin::Span;

/// An IPv4 UDP packet logged on OUTPUT via lo, group 7, prefix "pfx".
#[rustfmt::skip]
const IPV4_OUT: [u8; 128] = [
    // nlmsghdr
    128, 0, 0, 0,            // nlmsg_len = 128
    0x00, 0x04,              // nlmsg_type = NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET
    0, 0,                    // nlmsg_flags = 0
    0, 0, 0, 0,              // nlmsg_seq = 0
    0, 0, 0, 0,              // nlmsg_pid = 0 (kernel)
    // nfgenmsg
    2,                       // nfgen_family = AF_INET
    0,                       // version = NFNETLINK_V0
    0x00, 0x07,              // res_id = group 7 (be16)
    // NFULA_PACKET_HDR
    8, 0, 1, 0,              // nla_len = 8, nla_type = 1
    0x08, 0x00,              // hw_protocol = ETH_P_IP (be16)
    3,                       // hook = NF_INET_LOCAL_OUT
    0,                       // _pad
    // NFULA_MARK
    8, 0, 2, 0,              // nla_len = 8, nla_type = 2
    0, 0, 0, 42,             // mark = 42 (be32)
    // NFULA_TIMESTAMP
    20, 0, 3, 0,             // nla_len = 20, nla_type = 3
    0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00, // sec = 1700000000 (be64)
    0, 0, 0, 0, 0x00, 0x01, 0xe2, 0x40, // usec = 123456 (be64)
    // NFULA_IFINDEX_OUTDEV
    8, 0, 5, 0,              // nla_len = 8, nla_type = 5
    0, 0, 0, 1,              // ifindex = 1 (lo)
    // NFULA_UID
    8, 0, 11, 0,             // nla_len = 8, nla_type = 11
    0, 0, 0x03, 0xe8,        // uid = 1000
    // NFULA_GID
    8, 0, 14, 0,             // nla_len = 8, nla_type = 14
    0, 0, 0x03, 0xe9,        // gid = 1001
    // NFULA_SEQ
    8, 0, 12, 0,             // nla_len = 8, nla_type = 12
    0, 0, 0, 5,              // seq = 5
    // NFULA_PREFIX
    8, 0, 10, 0,             // nla_len = 8, nla_type = 10
    b'p', b'f', b'x', 0,     // "pfx" NUL-terminated
    // NFULA_PAYLOAD
    32, 0, 9, 0,             // nla_len = 32, nla_type = 9
    0x45, 0, 0, 28,          // IPv4: version/ihl, tos, total length 28
    0, 1, 0x40, 0,           // id 1, DF
    64, 17, 0, 0,            // ttl 64, proto UDP, checksum
    127, 0, 0, 1,            // saddr
    127, 0, 0, 1,            // daddr
    0x30, 0x39, 0x27, 0x0f,  // UDP sport 12345, dport 9999
    0, 8, 0, 0,              // UDP length 8, checksum
];

/// An IPv4 packet seen on PREROUTING from eth0 with its Ethernet header.
#[rustfmt::skip]
const IPV4_IN_HW: [u8; 108] = [
    // nlmsghdr
    108, 0, 0, 0,            // nlmsg_len = 108
    0x00, 0x04,              // nlmsg_type = packet
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // flags, seq, pid
    // nfgenmsg
    2, 0, 0x00, 0x01,        // AF_INET, v0, group 1
    // NFULA_PACKET_HDR
    8, 0, 1, 0,
    0x08, 0x00, 0, 0,        // ETH_P_IP, hook NF_INET_PRE_ROUTING
    // NFULA_IFINDEX_INDEV
    8, 0, 4, 0,
    0, 0, 0, 2,              // ifindex 2
    // NFULA_HWADDR
    16, 0, 8, 0,             // nla_len = 16, nla_type = 8
    0, 6,                    // hw_addrlen = 6 (be16)
    0, 0,                    // _pad
    0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0, 0, // hw_addr[8]
    // NFULA_HWTYPE
    6, 0, 15, 0,             // nla_len = 6, nla_type = 15
    0, 1, 0, 0,              // ARPHRD_ETHER (be16), 2 bytes padding
    // NFULA_HWLEN
    6, 0, 17, 0,             // nla_len = 6, nla_type = 17
    0, 14, 0, 0,             // 14 (be16), padding
    // NFULA_HWHEADER
    18, 0, 16, 0,            // nla_len = 18, nla_type = 16
    0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, // destination MAC
    0x02, 0x11, 0x22, 0x33, 0x44, 0x55, // source MAC
    0x08, 0x00,              // ethertype
    0, 0,                    // padding
    // NFULA_CT, with NLA_F_NESTED set on the type
    12, 0, 18, 0x80,         // nla_len = 12, nla_type = 18 | NLA_F_NESTED
    8, 0, 3, 0, 0, 0, 0, 9,  // a nested CTA_MARK-like attribute
    // NFULA_PREFIX without NUL and with an embedded one later
    8, 0, 10, 0,
    b'a', b'b', 0, b'z',     // "ab", then junk after the NUL
];

fn msg(kind: u16, flags: u16, family: u8, group: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    let s = start_msg(&mut v, kind, flags, 0);
    v.push(family);
    v.push(0);
    v.extend_from_slice(&group.to_be_bytes());
    for (k, p) in attrs {
        put_attr(&mut v, *k, p);
    }
    finish_msg(&mut v, s);
    v
}

#[test]
fn parses_every_field_of_an_output_packet() {
    let p = parse_packet(&IPV4_OUT).expect("valid");
    assert_eq!(
        p,
        NflogPacket {
            msg: Span::new(0, 128),
            nl_flags: 0,
            family: 2,
            group: 7,
            hdr: Some(PacketHdr {
                hw_protocol: 0x0800,
                hook: 3
            }),
            mark: Some(42),
            timestamp: Some((1_700_000_000, 123_456)),
            outdev: Some(1),
            uid: Some(1000),
            gid: Some(1001),
            seq: Some(5),
            prefix: Some(Span::new(92, 3)),
            payload: Some(Span::new(100, 28)),
            ..NflogPacket::default()
        }
    );
    assert_eq!(&IPV4_OUT[92..95], b"pfx");
}

#[test]
fn parses_hardware_fields_nested_flag_and_prefix_nul() {
    let p = parse_packet(&IPV4_IN_HW).expect("valid");
    assert_eq!(p.indev, Some(2));
    assert_eq!(
        p.hwaddr,
        Some(HwAddr {
            addr: Span::new(44, 6),
            addrlen: 6
        })
    );
    assert_eq!(&IPV4_IN_HW[44..50], &[0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    assert_eq!(p.hwtype, Some(1));
    assert_eq!(p.hwlen, Some(14));
    assert_eq!(p.hwheader, Some(Span::new(72, 14)));
    assert_eq!(p.ct, Some(Span::new(92, 8)));
    assert_eq!(p.prefix, Some(Span::new(104, 2)));
    assert_eq!(p.payload, None);
}

#[test]
fn walks_a_multipart_batch_with_buffer_relative_spans() {
    let a = msg(MSG_PACKET, NLM_F_MULTI, 2, 7, &[(9, b"abcd"), (10, b"x\0")]);
    let b = msg(MSG_PACKET, NLM_F_MULTI, 10, 7, &[(9, b"efghij")]);
    let done = msg(NLMSG_DONE, NLM_F_MULTI, 0, 7, &[]);
    let buf = [a.clone(), b, done].concat();
    let got: Vec<_> = messages(&buf).collect();
    assert_eq!(got.len(), 3);
    let Ok(Message::Packet(p1)) = got[0] else {
        panic!("{:?}", got[0])
    };
    let Ok(Message::Packet(p2)) = got[1] else {
        panic!("{:?}", got[1])
    };
    assert_eq!(got[2], Ok(Message::Done));
    assert_eq!(p1.nl_flags, NLM_F_MULTI);
    let s = |sp: Span| &buf[sp.off as usize..(sp.off + sp.len) as usize];
    assert_eq!(s(p1.payload.unwrap()), b"abcd");
    assert_eq!(s(p1.prefix.unwrap()), b"x");
    assert_eq!(p2.family, 10);
    assert_eq!(s(p2.payload.unwrap()), b"efghij");
    assert_eq!(p2.msg.off as usize, a.len());
}

#[test]
fn a_bad_attribute_skips_its_message_only() {
    let mut bad = msg(MSG_PACKET, 0, 2, 7, &[(2, &[0, 0, 0, 1])]);
    // nla_len = 2: smaller than the attribute header itself.
    bad[20] = 2;
    let good = msg(MSG_PACKET, 0, 2, 7, &[(2, &[0, 0, 0, 1])]);
    let buf = [bad, good].concat();
    let got: Vec<_> = messages(&buf).collect();
    assert!(matches!(
        got[0],
        Err(ParseError::BadAttributeLength { len: 2, .. })
    ));
    assert!(matches!(got[1], Ok(Message::Packet(p)) if p.mark == Some(1)));
}

#[test]
fn attribute_overrunning_its_message_is_an_error() {
    let mut m = msg(MSG_PACKET, 0, 2, 7, &[(9, b"abcd")]);
    m[20] = 200; // nla_len far past the message end
    assert!(matches!(
        parse_packet(&m),
        Err(ParseError::BadAttributeLength { len: 200, .. })
    ));
}

#[test]
fn short_fixed_attributes_are_errors() {
    let m = msg(MSG_PACKET, 0, 2, 7, &[(2, &[0, 1])]); // MARK with 2 bytes
    assert!(matches!(
        parse_packet(&m),
        Err(ParseError::AttributeTooShort {
            kind: 2,
            need: 4,
            ..
        })
    ));
    let m = msg(MSG_PACKET, 0, 2, 7, &[(3, &[0; 8])]); // TIMESTAMP with 8 bytes
    assert!(parse_packet(&m).is_err());
    let m = msg(MSG_PACKET, 0, 2, 7, &[(8, &[0; 6])]); // HWADDR with 6 bytes
    assert!(parse_packet(&m).is_err());
}

#[test]
fn truncated_messages_end_the_walk() {
    let a = msg(MSG_PACKET, 0, 2, 7, &[(9, b"abcd")]);
    let b = msg(MSG_PACKET, 0, 2, 7, &[(9, b"efgh")]);
    let buf = [a.clone(), b].concat();
    // Cut inside the second message: the first is fine, the second is not.
    let cut = &buf[..a.len() + 20];
    let got: Vec<_> = messages(cut).collect();
    assert_eq!(got.len(), 2);
    assert!(matches!(got[0], Ok(Message::Packet(_))));
    assert!(matches!(got[1], Err(ParseError::BadMessageLength { .. })));
    // Fewer bytes than a header.
    let got: Vec<_> = messages(&buf[..10]).collect();
    assert_eq!(
        got,
        vec![Err(ParseError::TruncatedHeader { offset: 0, len: 10 })]
    );
    // nlmsg_len smaller than the header would loop forever if accepted.
    let mut tiny = a.clone();
    tiny[0] = 8;
    assert!(matches!(
        messages(&tiny).next(),
        Some(Err(ParseError::BadMessageLength { len: 8, .. }))
    ));
    // A packet message with no room for nfgenmsg.
    let mut nofam = a[..16].to_vec();
    nofam[0] = 16;
    assert!(matches!(
        parse_packet(&nofam),
        Err(ParseError::TruncatedFamilyHeader { .. })
    ));
}

#[test]
fn decodes_errors_and_acks() {
    #[rustfmt::skip]
    let err: [u8; 36] = [
        36, 0, 0, 0,        // nlmsg_len
        2, 0,               // NLMSG_ERROR
        0, 1,               // flags
        9, 0, 0, 0,         // seq 9
        0, 0, 0, 0,         // pid
        0xff, 0xff, 0xff, 0xff, // error = -1 (EPERM)
        20, 0, 0, 0, 0x01, 0x04, 5, 0, 9, 0, 0, 0, 0, 0, 0, 0, // echoed request header, seq 9
    ];
    assert_eq!(
        messages(&err).collect::<Vec<_>>(),
        vec![Ok(Message::Error { errno: 1, seq: 9 })]
    );
    let mut ack = err;
    ack[16..20].copy_from_slice(&0i32.to_ne_bytes());
    assert_eq!(
        messages(&ack).next(),
        Some(Ok(Message::Error { errno: 0, seq: 9 }))
    );
    assert_eq!(
        messages(&err[..24]).next().map(|r| r.is_err()),
        Some(true),
        "nlmsg_len 36 in a 24-byte buffer"
    );
}

#[test]
fn builds_config_requests_like_the_kernel_expects() {
    let mut v = Vec::new();
    config_request(&mut v, 3, 0, 7, Config::Cmd(1));
    #[rustfmt::skip]
    let want: [u8; 28] = [
        28, 0, 0, 0,        // nlmsg_len
        0x01, 0x04,         // NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG
        0x05, 0,            // NLM_F_REQUEST | NLM_F_ACK
        3, 0, 0, 0,         // seq
        0, 0, 0, 0,         // pid
        0, 0, 0x00, 0x07,   // nfgenmsg: AF_UNSPEC, v0, group 7
        5, 0, 1, 0,         // NFULA_CFG_CMD, nla_len 5
        1, 0, 0, 0,         // NFULNL_CFG_CMD_BIND, padding
    ];
    assert_eq!(v, want);
    v.clear();
    config_request(
        &mut v,
        4,
        0,
        7,
        Config::Mode {
            mode: 2,
            range: 0xffff,
        },
    );
    // NFULA_CFG_MODE: nla_len 10, copy_range be32, copy_mode, pad, 2 bytes padding.
    assert_eq!(&v[20..], &[10, 0, 2, 0, 0, 0, 0xff, 0xff, 2, 0, 0, 0]);
    v.clear();
    config_request(&mut v, 5, 0, 7, Config::Flags(0x5));
    assert_eq!(&v[20..], &[6, 0, 6, 0, 0, 5, 0, 0]);
}

#[test]
fn no_truncation_or_byte_flip_panics() {
    let buf = [&IPV4_OUT[..], &IPV4_IN_HW[..]].concat();
    for cut in 0..=buf.len() {
        messages(&buf[..cut]).for_each(drop);
    }
    for i in 0..buf.len() {
        for v in [0u8, 1, 3, 0x7f, 0x80, 0xff] {
            let mut b = buf.clone();
            b[i] = v;
            for m in messages(&b).flatten() {
                if let Message::Packet(p) = m {
                    check_spans(&b, &p);
                }
            }
        }
    }
}

/// Every span the parser returns lies inside the buffer.
fn check_spans(buf: &[u8], p: &NflogPacket) {
    let mut spans = vec![p.msg];
    spans.extend(p.payload);
    spans.extend(p.prefix);
    spans.extend(p.hwheader);
    spans.extend(p.ct);
    spans.extend(p.hwaddr.map(|h| h.addr));
    for s in spans {
        assert!(s.off as usize + s.len as usize <= buf.len(), "{s:?}");
    }
}

#[test]
fn replays_the_fuzz_corpus() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/corpus/nflog");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        panic!("corpus missing at {}", dir.display());
    };
    let mut n = 0;
    for e in rd.flatten() {
        let data = std::fs::read(e.path()).expect("readable corpus file");
        for m in messages(&data) {
            if let Ok(Message::Packet(p)) = m {
                check_spans(&data, &p);
                let (a, l) = (p.msg.off as usize, p.msg.len as usize);
                assert_eq!(
                    parse_packet(&data[a..a + l]).map(|q| q.family),
                    Ok(p.family)
                );
            }
        }
        // Captured kernel datagrams and hand-made seeds must parse cleanly.
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("kernel-") || name.starts_with("hand-") {
            assert!(
                messages(&data).all(|m| m.is_ok()),
                "{} has a malformed message",
                e.path().display()
            );
        }
        n += 1;
    }
    assert!(n > 0, "empty corpus at {}", dir.display());
}

#[test]
fn takes_the_vlan_id_from_the_nested_vlan_attribute() {
    use super::nflog::attr;
    // NFULA_VLAN { NFULA_VLAN_PROTO 802.1Q, NFULA_VLAN_TCI prio 5, id 42 },
    // with the nested flag set as the kernel does.
    let mut nest = Vec::new();
    put_attr(&mut nest, 1, &0x8100u16.to_be_bytes());
    put_attr(
        &mut nest,
        attr::VLAN_TCI,
        &((5u16 << 13) | 42).to_be_bytes(),
    );
    let m = msg(MSG_PACKET, 0, 7, 3, &[(attr::VLAN | 0x8000, &nest)]);
    assert_eq!(parse_packet(&m).expect("valid").vlan, Some(42));
    let m = msg(MSG_PACKET, 0, 7, 3, &[(attr::MARK, &[0, 0, 0, 1])]);
    assert_eq!(parse_packet(&m).expect("valid").vlan, None);
}
