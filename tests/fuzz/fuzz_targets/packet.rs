//! Fuzzes rulogd-packet's views: every view over every suffix of the input
//! must either refuse it or read every field, and its variable parts must
//! lie inside the buffer. Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rulogd_packet::*;

fuzz_target!(|data: &[u8]| {
    // A few offsets, so headers also start where a chain would put them.
    for start in [0, 1, 2, 8, 20, 40].into_iter().filter(|&s| s <= data.len()) {
        let b = &data[start..];
        if let Ok(ip) = Ipv4Packet::new_checked(b) {
            let _ = (ip.version(), ip.tos(), ip.ident(), ip.frag_offset(), ip.ttl());
            let _ = (ip.checksum(), ip.src_addr(), ip.dst_addr());
            for p in [ip.payload(), ip.payload_in_total_len()].into_iter().flatten() {
                assert!(p.len() <= b.len());
                assert!(p.len() <= usize::from(ip.total_len()).max(b.len()));
            }
        }
        if let Ok(ip) = Ipv6Packet::new_checked(b) {
            let _ = (ip.version(), ip.traffic_class(), ip.payload_len(), ip.hop_limit());
            let _ = (ip.src_addr(), ip.dst_addr(), ip.next_header());
            assert!(ip.flow_label() <= 0xf_ffff);
            assert_eq!(ip.payload().len() + Ipv6Packet::LEN, b.len());
        }
        if let Ok(e) = Ipv6ExtHeader::new_checked(b) {
            assert!(e.options_len() >= 8 && e.ah_len() >= 8);
            assert_eq!(e.captured(), b.len());
            let _ = e.next_header();
        }
        if let Ok(f) = Ipv6FragHeader::new_checked(b) {
            assert_eq!(f.frag_offset_bytes() % 8, 0);
            let _ = (f.next_header(), f.more_frags(), f.ident());
        }
        if let Ok(t) = TcpPacket::new_checked(b) {
            let _ = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number());
            let _ = (t.window_len(), t.checksum(), t.urgent_at(), t.flags());
            assert!(t.data_offset() <= 15 && t.reserved() <= 15 && t.ecn_bits() <= 3);
            assert!(t.options().len() <= 40);
            if let Some(p) = t.payload() {
                assert_eq!(p.len() + t.header_len(), b.len());
            }
        }
        if let Ok(u) = UdpPacket::new_checked(b) {
            let _ = (u.src_port(), u.dst_port(), u.len(), u.is_empty(), u.checksum());
            assert_eq!(u.payload().len() + UdpPacket::LEN, b.len());
        }
        if let Ok(s) = SctpHeader::new_checked(b) {
            let _ = (s.src_port(), s.dst_port(), s.verification_tag(), s.checksum());
        }
        if let Ok(i) = IcmpPacket::new_checked(b) {
            let _ = (i.msg_type(), i.code(), i.checksum_bytes(), i.echo_ident());
            let _ = (i.echo_seq(), i.gateway(), i.next_hop_mtu());
        }
        if let Ok(i) = IcmpPacket::new_checked_v6(b) {
            let _ = (i.msg_type(), i.code(), i.checksum_bytes(), i.echo_ident(), i.echo_seq());
        }
        if let Ok(a) = AhHeader::new_checked(b) {
            let _ = (a.next_header(), a.header_len(), a.spi(), a.seq_number());
        }
        if let Ok(e) = EspHeader::new_checked(b) {
            let _ = (e.spi(), e.seq_number());
        }
        if let Ok(a) = ArpPacket::new_checked(b) {
            let _ = (a.hw_type(), a.proto_type(), a.operation());
            let _ = (a.sender_proto_addr(), a.target_proto_addr());
            assert_eq!(a.sender_hw_addr().len(), ArpPacket::HW_LEN);
            assert_eq!(a.target_hw_addr().len(), ArpPacket::HW_LEN);
        }
    }
});
