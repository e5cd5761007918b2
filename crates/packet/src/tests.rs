use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// IPv4 (ihl 6, one option word) / TCP (data offset 7) with payload "hi"
/// and 2 bytes of padding after the total length.
fn tcp4() -> Vec<u8> {
    let mut p = vec![0x46, 0xb8, 0, 54, 0x12, 0x34, 0x40, 0x00, 63, 6, 0xab, 0xcd];
    p.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 7]);
    p.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    p.extend_from_slice(&[0x9c, 0x40, 0x00, 0x15]); // 40000 -> 21
    p.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 9]);
    p.extend_from_slice(&[0x7a, 0xd3, 0x01, 0x00, 0xbe, 0xef, 0x00, 0x05]);
    p.extend_from_slice(&[2, 4, 5, 0xb4, 1, 1, 1, 0]); // MSS, NOPs
    p.extend_from_slice(b"hi");
    p.extend_from_slice(&[0, 0]);
    p
}

#[test]
fn ipv4_and_tcp_fields() {
    let p = tcp4();
    let ip = Ipv4Packet::new_checked(&p).expect("ipv4");
    assert_eq!((ip.version(), ip.ihl(), ip.header_len()), (4, 6, 24));
    assert_eq!((ip.tos(), ip.total_len(), ip.ident()), (0xb8, 54, 0x1234));
    assert_eq!((ip.frag_field(), ip.frag_offset()), (0x4000, 0));
    assert_eq!((ip.ttl(), ip.protocol(), ip.checksum()), (63, 6, 0xabcd));
    assert_eq!(ip.src_addr(), Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(ip.dst_addr(), Ipv4Addr::new(198, 51, 100, 7));
    assert_eq!(ip.payload().map(<[u8]>::len), Some(p.len() - 24));
    let l4 = ip.payload_in_total_len().expect("in total length");
    assert_eq!(l4.len(), 54 - 24, "padding is cut off");
    let t = TcpPacket::new_checked(l4).expect("tcp");
    assert_eq!((t.src_port(), t.dst_port()), (40000, 21));
    assert_eq!((t.seq_number(), t.ack_number()), (7, 9));
    assert_eq!(
        (t.data_offset(), t.header_len(), t.reserved()),
        (7, 28, 0xa)
    );
    assert_eq!((t.flags(), t.ecn_bits()), (0xd3, 3));
    assert_eq!(
        [t.urg(), t.ack(), t.psh(), t.rst(), t.syn(), t.fin()],
        [false, true, false, false, true, true]
    );
    assert_eq!(
        (t.window_len(), t.checksum(), t.urgent_at()),
        (256, 0xbeef, 5)
    );
    assert_eq!(t.options(), &[2, 4, 5, 0xb4, 1, 1, 1, 0]);
    assert_eq!(t.payload(), Some(&b"hi"[..]));
}

#[test]
fn ipv6_and_extension_headers() {
    let mut p = vec![0x6a, 0xbc, 0xde, 0xf1, 0, 16, 44, 9];
    p.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&[17, 0, 0x05, 0x39, 0xde, 0xad, 0xbe, 0xef]); // frag: off 167*8, M
    p.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0x12, 0x34]);
    let ip = Ipv6Packet::new_checked(&p).expect("ipv6");
    assert_eq!(
        (ip.version(), ip.traffic_class(), ip.flow_label()),
        (6, 0xab, 0xcdef1)
    );
    assert_eq!(
        (ip.payload_len(), ip.next_header(), ip.hop_limit()),
        (16, 44, 9)
    );
    assert_eq!(ip.src_addr(), Ipv6Addr::LOCALHOST);
    let f = Ipv6FragHeader::new_checked(ip.payload()).expect("frag");
    assert_eq!((f.next_header(), f.frag_offset_bytes()), (17, 0x0538));
    assert!(f.more_frags());
    assert_eq!(f.ident(), 0xdead_beef);
    let e = Ipv6ExtHeader::new_checked(ip.payload()).expect("ext");
    assert_eq!(
        (e.next_header(), e.len_field(), e.options_len(), e.ah_len()),
        (17, 0, 8, 8)
    );
    assert_eq!(e.captured(), 16);
    let u = UdpPacket::new_checked(&ip.payload()[8..]).expect("udp");
    assert_eq!(
        (u.src_port(), u.dst_port(), u.len(), u.checksum()),
        (53, 53, 8, 0x1234)
    );
    assert!(u.is_empty());
    assert!(u.payload().is_empty());
}

#[test]
fn small_headers() {
    let b = [8, 0, 0xf7, 0xff, 0, 1, 0, 2, 0xaa, 0xbb, 0xcc, 0xdd];
    let i = IcmpPacket::new_checked(&b).unwrap();
    assert_eq!(
        (i.msg_type(), i.code(), i.checksum_bytes()),
        (8, 0, [0xf7, 0xff])
    );
    assert_eq!((i.echo_ident(), i.echo_seq(), i.next_hop_mtu()), (1, 2, 2));
    assert_eq!(i.gateway(), Ipv4Addr::new(0, 1, 0, 2));
    let i6 = IcmpPacket::new_checked_v6(&b).unwrap();
    assert_eq!((i6.msg_type(), i6.echo_ident(), i6.echo_seq()), (8, 1, 2));
    let s = SctpHeader::new_checked(&b).unwrap();
    assert_eq!((s.src_port(), s.dst_port()), (0x0800, 0xf7ff));
    assert_eq!(
        (s.verification_tag(), s.checksum()),
        (0x0001_0002, 0xaabb_ccdd)
    );
    let ah = AhHeader::new_checked(&b).unwrap();
    assert_eq!((ah.next_header(), ah.header_len()), (8, 8));
    assert_eq!((ah.spi(), ah.seq_number()), (0x0001_0002, 0xaabb_ccdd));
    let esp = EspHeader::new_checked(&b).unwrap();
    assert_eq!((esp.spi(), esp.seq_number()), (0x0800_f7ff, 0x0001_0002));
}

#[test]
fn arp_fields() {
    let mut b = vec![0, 1, 8, 0, 6, 4, 0, 2];
    b.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
    b.extend_from_slice(&[2, 0, 0, 0, 0, 2, 10, 0, 0, 2]);
    let a = ArpPacket::new_checked(&b).unwrap();
    assert_eq!(
        (a.hw_type(), a.proto_type(), a.operation()),
        (1, 0x0800, arp_op::REPLY)
    );
    assert_eq!(a.sender_hw_addr(), &[2, 0, 0, 0, 0, 1]);
    assert_eq!(a.sender_proto_addr(), Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(a.target_hw_addr(), &[2, 0, 0, 0, 0, 2]);
    assert_eq!(a.target_proto_addr(), Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(
        &b[ArpPacket::SENDER_HW_OFFSET..][..ArpPacket::HW_LEN],
        a.sender_hw_addr()
    );
}

/// Every view refuses exactly the buffers shorter than its fixed header.
#[test]
fn truncation_is_refused_at_the_fixed_length() {
    let buf = [0u8; 64];
    type Check = fn(&[u8]) -> Option<Truncated>;
    let lens: [(usize, Check); 11] = [
        (20, |b| Ipv4Packet::new_checked(b).err()),
        (40, |b| Ipv6Packet::new_checked(b).err()),
        (2, |b| Ipv6ExtHeader::new_checked(b).err()),
        (8, |b| Ipv6FragHeader::new_checked(b).err()),
        (20, |b| TcpPacket::new_checked(b).err()),
        (8, |b| UdpPacket::new_checked(b).err()),
        (12, |b| SctpHeader::new_checked(b).err()),
        (8, |b| IcmpPacket::new_checked(b).err()),
        (8, |b| IcmpPacket::new_checked_v6(b).err()),
        (12, |b| AhHeader::new_checked(b).err()),
        (28, |b| ArpPacket::new_checked(b).err()),
    ];
    for (need, check) in lens {
        for n in 0..=buf.len() {
            match check(&buf[..n]) {
                Some(e) => {
                    assert!(n < need, "{e} at {n}");
                    assert_eq!((e.need, e.got), (need, n));
                }
                None => assert!(n >= need, "accepted {n} bytes, needs {need}"),
            }
        }
    }
    let e = EspHeader::new_checked(&buf[..7]).unwrap_err();
    assert_eq!(e.to_string(), "ESP header needs 8 bytes, 7 captured");
    let e = IcmpPacket::new_checked_v6(&buf[..3]).unwrap_err();
    assert_eq!(e.to_string(), "ICMPv6 header needs 8 bytes, 3 captured");
}

/// Hostile lengths (ihl, data offset, total length) never reach past the
/// capture: the variable parts are clamped or absent.
#[test]
fn hostile_lengths_stay_inside_the_buffer() {
    let full = tcp4();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let mut p = full.clone();
        let at = (x as usize) % p.len();
        p[at] = (x >> 8) as u8;
        p.truncate((x >> 16) as usize % (p.len() + 1));
        if let Ok(ip) = Ipv4Packet::new_checked(&p) {
            for l4 in [ip.payload(), ip.payload_in_total_len()]
                .into_iter()
                .flatten()
            {
                assert!(l4.len() <= p.len());
                if let Ok(t) = TcpPacket::new_checked(l4) {
                    assert!(t.options().len() <= 40);
                    if let Some(pl) = t.payload() {
                        assert_eq!(pl.len() + t.header_len(), l4.len());
                    }
                }
            }
        }
    }
    // ihl 0 and data offset 0: a payload that overlaps, and none.
    let mut p = full.clone();
    p[0] = 0x40;
    let ip = Ipv4Packet::new_checked(&p).unwrap();
    assert_eq!(ip.payload().map(<[u8]>::len), Some(p.len()));
    p[12] = 0;
    let t = TcpPacket::new_checked(&p).unwrap();
    assert_eq!((t.options(), t.payload()), (&[][..], None));
}
