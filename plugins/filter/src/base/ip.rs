//! The IPv4 header, and the IPv6 header with its extension-header chain.

use super::keys::*;
use super::{l4, Sink};
use rulogd_packet::ip_proto::*;
use rulogd_packet::{Ipv4Packet, Ipv6ExtHeader, Ipv6FragHeader, Ipv6Packet};
use rulogd_plugin::Value;

/// Decodes an IPv4 header and the header after it.
pub(super) fn ipv4(st: &mut impl Sink, p: &[u8]) {
    let Ok(ip) = Ipv4Packet::new_checked(p) else {
        return;
    };
    // ulogd wants at least one byte beyond the header ...
    let Some(next) = ip.payload().filter(|r| !r.is_empty()) else {
        return;
    };
    st.put(IP_SADDR, Value::Ipv4(ip.src_addr()));
    st.put(IP_DADDR, Value::Ipv4(ip.dst_addr()));
    st.put(IP_PROTOCOL, Value::U8(ip.protocol()));
    st.put(IP_TOS, Value::U8(ip.tos()));
    st.put(IP_TTL, Value::U8(ip.ttl()));
    st.put(IP_TOTLEN, Value::U16(ip.total_len()));
    st.put(IP_IHL, Value::U8(ip.ihl()));
    st.put(IP_CSUM, Value::U16(ip.checksum()));
    st.put(IP_ID, Value::U16(ip.ident()));
    // The whole 16-bit field, flags included (DF reads as 16384), as ulogd.
    st.put(IP_FRAGOFF, Value::U16(ip.frag_field()));
    // ... and, as ulogd, takes the next header to start at ihl*4 even when
    // ihl < 5 or the packet is a non-first fragment, so the keys match its.
    match ip.protocol() {
        TCP => l4::tcp(st, next),
        UDP => l4::udp(st, next),
        ICMP => l4::icmp(st, next),
        SCTP => l4::sctp(st, next),
        AH => l4::ah(st, next),
        ESP => l4::esp(st, next),
        _ => {}
    }
}

/// Whether `nh` is an extension header ulogd walks over.
fn is_ext(nh: u8) -> bool {
    matches!(nh, HOPOPTS | ROUTING | FRAGMENT | ESP | AH | DSTOPTS)
}

/// Decodes an IPv6 header, walks its extension headers and decodes the
/// layer-4 header (TCP, UDP, ICMPv6) of first fragments and whole packets.
///
/// Where ulogd gives up on a cut or inconsistent chain it returns without
/// `ip6.nexthdr`, and so does this.
pub(super) fn ipv6(st: &mut impl Sink, p: &[u8]) {
    let Ok(ip) = Ipv6Packet::new_checked(p) else {
        return;
    };
    st.put(IP_SADDR, Value::Ipv6(ip.src_addr()));
    st.put(IP_DADDR, Value::Ipv6(ip.dst_addr()));
    st.put(IP6_PAYLOADLEN, Value::U16(ip.payload_len()));
    st.put(IP6_PRIORITY, Value::U8(ip.traffic_class()));
    st.put(IP6_FLOWLABEL, Value::U32(ip.flow_label()));
    st.put(IP6_HOPLIMIT, Value::U8(ip.hop_limit()));

    let mut cur = ip.next_header();
    let mut rest = ip.payload();
    let mut fragment = false;
    // ESP hides what follows, so decoding ends there.
    let mut esp = false;
    while cur != NONE && is_ext(cur) {
        let Ok(ext) = Ipv6ExtHeader::new_checked(rest) else {
            return;
        };
        let hdrlen = match cur {
            FRAGMENT => {
                let Ok(f) = Ipv6FragHeader::new_checked(rest) else {
                    return;
                };
                let fragoff = f.frag_offset_bytes();
                st.put(IP6_FRAGOFF, Value::U16(fragoff));
                st.put(IP6_FRAGID, Value::U32(f.ident()));
                fragment |= fragoff != 0;
                Ipv6FragHeader::LEN
            }
            // Past a non-first fragment's header the rest is not parseable.
            _ if fragment => break,
            HOPOPTS | ROUTING | DSTOPTS => ext.options_len(),
            AH => {
                let n = ext.ah_len();
                if rest.len() >= n {
                    l4::ah(st, rest);
                }
                n
            }
            _ => {
                // ESP has no length field; ulogd reads one anyway (the second
                // SPI byte, as if it were AH's) and gives up when the packet
                // is shorter than that bogus length. The SPI is ours to
                // report regardless; the bogus check is kept so that
                // ip6.nexthdr matches ulogd's.
                l4::esp(st, rest);
                if rest.len() < ext.ah_len() {
                    return;
                }
                esp = true;
                break;
            }
        };
        let Some(after) = rest.get(hdrlen..) else {
            return;
        };
        cur = ext.next_header();
        rest = after;
    }
    if !fragment && !esp {
        st.put(IP_PROTOCOL, Value::U8(cur));
        match cur {
            TCP => l4::tcp(st, rest),
            UDP => l4::udp(st, rest),
            ICMPV6 => l4::icmpv6(st, rest),
            _ => {}
        }
    }
    st.put(IP6_NEXTHDR, Value::U8(cur));
}
