//! Layer-4 headers: TCP, UDP, SCTP, ICMP, ICMPv6, AH and ESP.
//!
//! Each decoder needs its whole fixed header, as ulogd's `sizeof` checks do.

use super::keys::*;
use super::{be16, be32, Stage};
use rulogd_plugin::Value;
use std::net::Ipv4Addr;

/// TCP (20 bytes).
pub(super) fn tcp(st: &mut Stage, p: &[u8]) {
    let Some(h) = p.first_chunk::<20>() else {
        return;
    };
    let flags = h[13];
    st.put(TCP_SPORT, Value::U16(be16([h[0], h[1]])));
    st.put(TCP_DPORT, Value::U16(be16([h[2], h[3]])));
    st.put(TCP_SEQ, Value::U32(be32([h[4], h[5], h[6], h[7]])));
    st.put(TCP_ACKSEQ, Value::U32(be32([h[8], h[9], h[10], h[11]])));
    // ulogd 2.0.8 byte-swaps these 4-bit fields into 0; we give the real
    // data offset (in 32-bit words) and reserved bits (docs/COMPATIBILITY.md).
    st.put(TCP_OFFSET, Value::U8(h[12] >> 4));
    st.put(TCP_RESERVED, Value::U8(h[12] & 0x0f));
    st.put(TCP_WINDOW, Value::U16(be16([h[14], h[15]])));
    st.put(TCP_URG, Value::Bool(flags & 0x20 != 0));
    if flags & 0x20 != 0 {
        st.put(TCP_URGP, Value::U16(be16([h[18], h[19]])));
    }
    st.put(TCP_ACK, Value::Bool(flags & 0x10 != 0));
    st.put(TCP_PSH, Value::Bool(flags & 0x08 != 0));
    st.put(TCP_RST, Value::Bool(flags & 0x04 != 0));
    st.put(TCP_SYN, Value::Bool(flags & 0x02 != 0));
    st.put(TCP_FIN, Value::Bool(flags & 0x01 != 0));
    // ulogd stores the whole bit-field (res1: 4 bits, res2: the 2 bits ECE
    // and CWR) in its "bool", and JSON prints that number, e.g. 3 for an
    // ECN-setup SYN; an integer value keeps those numbers identical.
    st.put(TCP_RES1, Value::U8(h[12] & 0x0f));
    st.put(TCP_RES2, Value::U8(flags >> 6));
    st.put(TCP_CSUM, Value::U16(be16([h[16], h[17]])));
}

/// UDP (8 bytes).
pub(super) fn udp(st: &mut Stage, p: &[u8]) {
    let Some(h) = p.first_chunk::<8>() else {
        return;
    };
    st.put(UDP_SPORT, Value::U16(be16([h[0], h[1]])));
    st.put(UDP_DPORT, Value::U16(be16([h[2], h[3]])));
    st.put(UDP_LEN, Value::U16(be16([h[4], h[5]])));
    st.put(UDP_CSUM, Value::U16(be16([h[6], h[7]])));
}

/// SCTP common header (12 bytes).
pub(super) fn sctp(st: &mut Stage, p: &[u8]) {
    let Some(h) = p.first_chunk::<12>() else {
        return;
    };
    st.put(SCTP_SPORT, Value::U16(be16([h[0], h[1]])));
    st.put(SCTP_DPORT, Value::U16(be16([h[2], h[3]])));
    st.put(SCTP_CSUM, Value::U32(be32([h[8], h[9], h[10], h[11]])));
}

const ICMP_ECHOREPLY: u8 = 0;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMP_REDIRECT: u8 = 5;
const ICMP_ECHO: u8 = 8;
const ICMP_PARAMETERPROB: u8 = 12;

/// ICMP (8 bytes).
pub(super) fn icmp(st: &mut Stage, p: &[u8]) {
    let Some(h) = p.first_chunk::<8>() else {
        return;
    };
    st.put(ICMP_TYPE, Value::U8(h[0]));
    st.put(ICMP_CODE, Value::U8(h[1]));
    match h[0] {
        ICMP_ECHO | ICMP_ECHOREPLY => {
            st.put(ICMP_ECHOID, Value::U16(be16([h[4], h[5]])));
            st.put(ICMP_ECHOSEQ, Value::U16(be16([h[6], h[7]])));
        }
        // ulogd sets the gateway for parameter problems too (where those
        // bytes hold the pointer); 2.0.8 byte-swaps it, we keep the address
        // as it is on the wire (docs/COMPATIBILITY.md).
        ICMP_REDIRECT | ICMP_PARAMETERPROB => {
            st.put(
                ICMP_GATEWAY,
                Value::Ipv4(Ipv4Addr::new(h[4], h[5], h[6], h[7])),
            );
        }
        ICMP_DEST_UNREACH if h[1] == ICMP_FRAG_NEEDED => {
            st.put(ICMP_FRAGMTU, Value::U16(be16([h[6], h[7]])));
        }
        _ => {}
    }
    // ulogd does not byte-swap the checksum: it prints the two wire bytes
    // read as a native integer, and so must we to print the same number.
    st.put(ICMP_CSUM, Value::U16(u16::from_ne_bytes([h[2], h[3]])));
}

const ICMP6_ECHO_REQUEST: u8 = 128;
const ICMP6_ECHO_REPLY: u8 = 129;

/// ICMPv6 (8 bytes).
pub(super) fn icmpv6(st: &mut Stage, p: &[u8]) {
    let Some(h) = p.first_chunk::<8>() else {
        return;
    };
    st.put(ICMPV6_TYPE, Value::U8(h[0]));
    st.put(ICMPV6_CODE, Value::U8(h[1]));
    if matches!(h[0], ICMP6_ECHO_REQUEST | ICMP6_ECHO_REPLY) {
        st.put(ICMPV6_ECHOID, Value::U16(be16([h[4], h[5]])));
        st.put(ICMPV6_ECHOSEQ, Value::U16(be16([h[6], h[7]])));
    }
    // Not byte-swapped either, as in ulogd.
    st.put(ICMPV6_CSUM, Value::U16(u16::from_ne_bytes([h[2], h[3]])));
}

/// AH: next header, length, reserved, SPI, sequence number (12 bytes).
/// ulogd 2.0.8 never sets `ahesp.spi` (its code is disabled); we do.
pub(super) fn ah(st: &mut Stage, p: &[u8]) {
    if let Some(h) = p.first_chunk::<12>() {
        st.put(AHESP_SPI, Value::U32(be32([h[4], h[5], h[6], h[7]])));
    }
}

/// ESP: SPI, sequence number (8 bytes); see [`ah`].
pub(super) fn esp(st: &mut Stage, p: &[u8]) {
    if let Some(h) = p.first_chunk::<8>() {
        st.put(AHESP_SPI, Value::U32(be32([h[0], h[1], h[2], h[3]])));
    }
}
