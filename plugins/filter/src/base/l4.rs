//! Layer-4 headers into keys: TCP, UDP, SCTP, ICMP, ICMPv6, AH and ESP.
//!
//! Each needs its whole fixed header, as ulogd's `sizeof` checks do; the
//! views of rulogd-packet check exactly that.

use super::keys::*;
use super::Sink;
use rulogd_packet::{
    icmp, icmpv6, AhHeader, EspHeader, IcmpPacket, SctpHeader, TcpPacket, UdpPacket,
};
use rulogd_plugin::Value;

/// TCP (20 bytes).
pub(super) fn tcp(st: &mut impl Sink, p: &[u8]) {
    let Ok(t) = TcpPacket::new_checked(p) else {
        return;
    };
    st.put(TCP_SPORT, Value::U16(t.src_port()));
    st.put(TCP_DPORT, Value::U16(t.dst_port()));
    st.put(TCP_SEQ, Value::U32(t.seq_number()));
    st.put(TCP_ACKSEQ, Value::U32(t.ack_number()));
    // ulogd 2.0.8 byte-swaps these 4-bit fields into 0; we give the real
    // data offset (in 32-bit words) and reserved bits (docs/COMPATIBILITY.md).
    st.put(TCP_OFFSET, Value::U8(t.data_offset()));
    st.put(TCP_RESERVED, Value::U8(t.reserved()));
    st.put(TCP_WINDOW, Value::U16(t.window_len()));
    st.put(TCP_URG, Value::Bool(t.urg()));
    if t.urg() {
        st.put(TCP_URGP, Value::U16(t.urgent_at()));
    }
    st.put(TCP_ACK, Value::Bool(t.ack()));
    st.put(TCP_PSH, Value::Bool(t.psh()));
    st.put(TCP_RST, Value::Bool(t.rst()));
    st.put(TCP_SYN, Value::Bool(t.syn()));
    st.put(TCP_FIN, Value::Bool(t.fin()));
    // ulogd stores the whole bit-field (res1: 4 bits, res2: the 2 bits ECE
    // and CWR) in its "bool", and JSON prints that number, e.g. 3 for an
    // ECN-setup SYN; an integer value keeps those numbers identical.
    st.put(TCP_RES1, Value::U8(t.reserved()));
    st.put(TCP_RES2, Value::U8(t.ecn_bits()));
    st.put(TCP_CSUM, Value::U16(t.checksum()));
}

/// UDP (8 bytes).
pub(super) fn udp(st: &mut impl Sink, p: &[u8]) {
    let Ok(u) = UdpPacket::new_checked(p) else {
        return;
    };
    st.put(UDP_SPORT, Value::U16(u.src_port()));
    st.put(UDP_DPORT, Value::U16(u.dst_port()));
    st.put(UDP_LEN, Value::U16(u.len()));
    st.put(UDP_CSUM, Value::U16(u.checksum()));
}

/// SCTP common header (12 bytes).
pub(super) fn sctp(st: &mut impl Sink, p: &[u8]) {
    let Ok(s) = SctpHeader::new_checked(p) else {
        return;
    };
    st.put(SCTP_SPORT, Value::U16(s.src_port()));
    st.put(SCTP_DPORT, Value::U16(s.dst_port()));
    st.put(SCTP_CSUM, Value::U32(s.checksum()));
}

/// ICMP (8 bytes).
pub(super) fn icmp(st: &mut impl Sink, p: &[u8]) {
    let Ok(i) = IcmpPacket::new_checked(p) else {
        return;
    };
    st.put(ICMP_TYPE, Value::U8(i.msg_type()));
    st.put(ICMP_CODE, Value::U8(i.code()));
    match i.msg_type() {
        icmp::ECHO | icmp::ECHOREPLY => {
            st.put(ICMP_ECHOID, Value::U16(i.echo_ident()));
            st.put(ICMP_ECHOSEQ, Value::U16(i.echo_seq()));
        }
        // ulogd sets the gateway for parameter problems too (where those
        // bytes hold the pointer); 2.0.8 byte-swaps it, we keep the address
        // as it is on the wire (docs/COMPATIBILITY.md).
        icmp::REDIRECT | icmp::PARAMETERPROB => {
            st.put(ICMP_GATEWAY, Value::Ipv4(i.gateway()));
        }
        icmp::DEST_UNREACH if i.code() == icmp::FRAG_NEEDED => {
            st.put(ICMP_FRAGMTU, Value::U16(i.next_hop_mtu()));
        }
        _ => {}
    }
    // ulogd does not byte-swap the checksum: it prints the two wire bytes
    // read as a native integer, and so must we to print the same number.
    st.put(
        ICMP_CSUM,
        Value::U16(u16::from_ne_bytes(i.checksum_bytes())),
    );
}

/// ICMPv6 (8 bytes).
pub(super) fn icmpv6(st: &mut impl Sink, p: &[u8]) {
    let Ok(i) = IcmpPacket::new_checked_v6(p) else {
        return;
    };
    st.put(ICMPV6_TYPE, Value::U8(i.msg_type()));
    st.put(ICMPV6_CODE, Value::U8(i.code()));
    if matches!(i.msg_type(), icmpv6::ECHO_REQUEST | icmpv6::ECHO_REPLY) {
        st.put(ICMPV6_ECHOID, Value::U16(i.echo_ident()));
        st.put(ICMPV6_ECHOSEQ, Value::U16(i.echo_seq()));
    }
    // Not byte-swapped either, as in ulogd.
    st.put(
        ICMPV6_CSUM,
        Value::U16(u16::from_ne_bytes(i.checksum_bytes())),
    );
}

/// AH (12 bytes). ulogd 2.0.8 never sets `ahesp.spi` (its code is
/// disabled); we do.
pub(super) fn ah(st: &mut impl Sink, p: &[u8]) {
    if let Ok(h) = AhHeader::new_checked(p) {
        st.put(AHESP_SPI, Value::U32(h.spi()));
    }
}

/// ESP (8 bytes); see [`ah`].
pub(super) fn esp(st: &mut impl Sink, p: &[u8]) {
    if let Ok(h) = EspHeader::new_checked(p) {
        st.put(AHESP_SPI, Value::U32(h.spi()));
    }
}
