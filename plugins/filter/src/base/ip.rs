//! The IPv4 header, and the IPv6 header with its extension-header chain.

use super::keys::*;
use super::{be16, be32, l4, Stage};
use rulogd_plugin::Value;
use std::net::{Ipv4Addr, Ipv6Addr};

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_ESP: u8 = 50;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_NONE: u8 = 59;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_SCTP: u8 = 132;

/// Decodes an IPv4 header and the header after it.
pub(super) fn ipv4(st: &mut Stage, p: &[u8]) {
    let Some(h) = p.first_chunk::<20>() else {
        return;
    };
    let ihl = h[0] & 0x0f;
    // ulogd wants at least one byte beyond the header ...
    let Some(next) = p.get(usize::from(ihl) * 4..).filter(|r| !r.is_empty()) else {
        return;
    };
    st.put(
        IP_SADDR,
        Value::Ipv4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
    );
    st.put(
        IP_DADDR,
        Value::Ipv4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
    );
    st.put(IP_PROTOCOL, Value::U8(h[9]));
    st.put(IP_TOS, Value::U8(h[1]));
    st.put(IP_TTL, Value::U8(h[8]));
    st.put(IP_TOTLEN, Value::U16(be16([h[2], h[3]])));
    st.put(IP_IHL, Value::U8(ihl));
    st.put(IP_CSUM, Value::U16(be16([h[10], h[11]])));
    st.put(IP_ID, Value::U16(be16([h[4], h[5]])));
    // The whole 16-bit field, flags included (DF reads as 16384), as ulogd.
    st.put(IP_FRAGOFF, Value::U16(be16([h[6], h[7]])));
    // ... and, as ulogd, takes the next header to start at ihl*4 even when
    // ihl < 5 or the packet is a non-first fragment, so the keys match its.
    match h[9] {
        IPPROTO_TCP => l4::tcp(st, next),
        IPPROTO_UDP => l4::udp(st, next),
        IPPROTO_ICMP => l4::icmp(st, next),
        IPPROTO_SCTP => l4::sctp(st, next),
        IPPROTO_AH => l4::ah(st, next),
        IPPROTO_ESP => l4::esp(st, next),
        _ => {}
    }
}

/// Whether `nh` is an extension header ulogd walks over.
fn is_ext(nh: u8) -> bool {
    matches!(
        nh,
        IPPROTO_HOPOPTS
            | IPPROTO_ROUTING
            | IPPROTO_FRAGMENT
            | IPPROTO_ESP
            | IPPROTO_AH
            | IPPROTO_DSTOPTS
    )
}

/// Decodes an IPv6 header, walks its extension headers and decodes the
/// layer-4 header (TCP, UDP, ICMPv6) of first fragments and whole packets.
///
/// Where ulogd gives up on a cut or inconsistent chain it returns without
/// `ip6.nexthdr`, and so does this.
pub(super) fn ipv6(st: &mut Stage, p: &[u8]) {
    let Some(h) = p.first_chunk::<40>() else {
        return;
    };
    let flow = be32([h[0], h[1], h[2], h[3]]);
    let src: [u8; 16] = std::array::from_fn(|i| h[8 + i]);
    let dst: [u8; 16] = std::array::from_fn(|i| h[24 + i]);
    st.put(IP_SADDR, Value::Ipv6(Ipv6Addr::from(src)));
    st.put(IP_DADDR, Value::Ipv6(Ipv6Addr::from(dst)));
    st.put(IP6_PAYLOADLEN, Value::U16(be16([h[4], h[5]])));
    st.put(IP6_PRIORITY, Value::U8(((flow >> 20) & 0xff) as u8));
    st.put(IP6_FLOWLABEL, Value::U32(flow & 0x000f_ffff));
    st.put(IP6_HOPLIMIT, Value::U8(h[7]));

    let mut cur = h[6];
    let mut off = 40;
    let mut fragment = false;
    // ESP hides what follows, so decoding ends there.
    let mut esp = false;
    while cur != IPPROTO_NONE && is_ext(cur) {
        let rest = p.get(off..).unwrap_or(&[]);
        let Some(&[next, elen]) = rest.first_chunk::<2>() else {
            return;
        };
        let hdrlen = match cur {
            IPPROTO_FRAGMENT => {
                let Some(f) = rest.first_chunk::<8>() else {
                    return;
                };
                // The offset in bytes (the 13-bit field times 8), flags masked.
                let fragoff = be16([f[2], f[3]]) & 0xfff8;
                st.put(IP6_FRAGOFF, Value::U16(fragoff));
                st.put(IP6_FRAGID, Value::U32(be32([f[4], f[5], f[6], f[7]])));
                fragment |= fragoff != 0;
                8
            }
            // Past a non-first fragment's header the rest is not parseable.
            _ if fragment => break,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => (usize::from(elen) + 1) << 3,
            IPPROTO_AH => {
                let n = (usize::from(elen) + 2) << 2;
                if rest.len() >= n {
                    l4::ah(st, rest);
                }
                n
            }
            _ => {
                // ESP has no length field; ulogd reads one anyway (the second
                // SPI byte) and gives up when the packet is shorter than that
                // bogus length. The SPI is ours to report regardless; the
                // bogus check is kept so that ip6.nexthdr matches ulogd's.
                l4::esp(st, rest);
                if rest.len() < (usize::from(elen) + 2) << 2 {
                    return;
                }
                esp = true;
                break;
            }
        };
        if rest.len() < hdrlen {
            return;
        }
        cur = next;
        off += hdrlen;
    }
    if !fragment && !esp {
        st.put(IP_PROTOCOL, Value::U8(cur));
        let next = p.get(off..).unwrap_or(&[]);
        match cur {
            IPPROTO_TCP => l4::tcp(st, next),
            IPPROTO_UDP => l4::udp(st, next),
            IPPROTO_ICMPV6 => l4::icmpv6(st, next),
            _ => {}
        }
    }
    st.put(IP6_NEXTHDR, Value::U8(cur));
}
