//! The packet FLOW counts, from BASE's keys in the record or from FLOW's
//! own decoding of the packet with BASE's decoder.

use super::frag::{FragCache, FragKey};
use super::input::*;
use super::table::{tcp, Packet};
use super::{AF_INET, AF_INET6};
use rulogd_plugin::{Above, KeyDef, KeyType, Slot, Value};
use std::net::{Ipv4Addr, Ipv6Addr};

/// FLOW's own decoding of the packet: when every BASE key it reads comes
/// from one BASE instance above it, with nothing between them that makes
/// those keys or the packet anew, that BASE would make them only for FLOW
/// (its children see no packet record), so FLOW decodes with BASE's own
/// decoder into a stage and that BASE, its outputs now unread, idles. The
/// keys are the same values; they only skip a trip through the record,
/// which was two fifths of the sensor path.
pub(super) struct OwnDecode {
    pub(super) dec: crate::base::Decoder,
    /// BASE's index of each FLOW input BASE makes.
    pub(super) map: [Option<usize>; NIN],
    pub(super) pkt: Option<Slot>,
    pub(super) pktlen: Option<Slot>,
    pub(super) protocol: Option<Slot>,
}

/// What FLOW reads in place of BASE's keys when it decodes for itself.
pub(super) static OWN_INPUTS: [KeyDef; 4] = [
    KeyDef::new("raw.pkt", KeyType::Raw).optional(),
    KeyDef::new("raw.pktlen", KeyType::U32).optional(),
    KeyDef::new("oob.family", KeyType::U8).optional(),
    KeyDef::new("oob.protocol", KeyType::U16).optional(),
];

/// BASE's index of each FLOW input, when every one BASE makes comes from
/// the same BASE instance in `above` and BASE's own inputs come from above
/// that instance.
pub(super) fn own_decode_map(above: &[Above<'_>]) -> Option<[Option<usize>; NIN]> {
    let nearest = |name: &str| {
        above
            .iter()
            .rposition(|a| a.outputs.iter().any(|k| k.name == name))
    };
    let mut map = [None; NIN];
    let mut base = None;
    for (i, k) in INPUT_KEYS.iter().enumerate() {
        let Some(b) = crate::base::Decoder::index(&k.name) else {
            continue;
        };
        // Every key of BASE's that FLOW reads must come from that BASE.
        let at = nearest(&k.name)?;
        if above[at].plugin != "BASE" || base.is_some_and(|p| p != at) {
            return None;
        }
        base = Some(at);
        map[i] = Some(b);
    }
    let at = base?;
    // BASE's own oob.protocol is a copy of its input (and BASE makes just
    // that one cheaply when it is all that is read of it).
    let upstream_of_base = OWN_INPUTS
        .iter()
        .filter(|k| k.name != "oob.protocol")
        .all(|k| nearest(&k.name).is_none_or(|p| p < at));
    upstream_of_base.then_some(map)
}

/// Where a packet stands in fragmentation.
enum Frag {
    /// A whole datagram.
    No,
    /// The first fragment of datagram `FragKey`: it has the layer-4 header.
    First(FragKey),
    /// A later one: no layer-4 header.
    Later(FragKey),
}

pub(super) fn addr16(v: &Value) -> Option<(u8, [u8; 16])> {
    let mut a = [0u8; 16];
    match v {
        Value::Ipv4(ip) => {
            a[..4].copy_from_slice(&ip.octets());
            Some((AF_INET, a))
        }
        Value::Ipv6(ip) => Some((AF_INET6, ip.octets())),
        _ => None,
    }
}

pub(super) fn ip_addr(family: u8, a: &[u8; 16]) -> std::net::IpAddr {
    if family == AF_INET {
        Ipv4Addr::new(a[0], a[1], a[2], a[3]).into()
    } else {
        Ipv6Addr::from(*a).into()
    }
}

pub(super) fn addr_value(family: u8, a: &[u8; 16]) -> Value {
    if family == AF_INET {
        Value::Ipv4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    } else {
        Value::Ipv6(Ipv6Addr::from(*a))
    }
}

/// The packet FLOW counts, from its input keys as `get` gives them (by
/// FLOW's input index): from the record, or from FLOW's own decoder.
pub(super) fn packet_from<'v>(
    frags: &mut FragCache,
    get: impl Fn(usize) -> Option<&'v Value>,
) -> Option<Packet> {
    let get_u64 = |i: usize| get(i).and_then(Value::as_u64);
    let (family, src) = addr16(get(I_SADDR)?)?;
    let (_, dst) = addr16(get(I_DADDR)?)?;
    // BASE leaves ip.protocol unset past an IPv6 fragment header.
    let proto = get_u64(I_PROTO).or_else(|| get_u64(I_NEXTHDR))? as u8;
    let u16_of = |i: usize| get_u64(i).map(|v| v as u16);
    let fkey = |id: u32| FragKey {
        family,
        proto,
        src,
        dst,
        id,
    };
    let frag = if family == AF_INET {
        match u16_of(I_FRAGOFF) {
            Some(f) if f & 0x1fff != 0 => Frag::Later(fkey(u16_of(I_IPID)? as u32)),
            Some(f) if f & 0x2000 != 0 => Frag::First(fkey(u16_of(I_IPID)? as u32)),
            _ => Frag::No,
        }
    } else {
        match (u16_of(I_FRAGOFF6), get_u64(I_FRAGID6)) {
            (Some(0), Some(id)) => Frag::First(fkey(id as u32)),
            (Some(_), Some(id)) => Frag::Later(fkey(id as u32)),
            _ => Frag::No,
        }
    };
    let bytes = if family == AF_INET {
        u16_of(I_TOTLEN)? as u64
    } else {
        u16_of(I_PLEN6)? as u64 + 40
    };
    let (sport, dport) = match proto {
        6 => (u16_of(I_TSPORT), u16_of(I_TDPORT)),
        17 => (u16_of(I_USPORT), u16_of(I_UDPORT)),
        _ => (None, None),
    };
    let mut flags = 0u8;
    if proto == 6 {
        let bits = [
            (I_FIN, tcp::FIN),
            (I_SYN, tcp::SYN),
            (I_RST, tcp::RST),
            (I_PSH, tcp::PSH),
            (I_ACK, tcp::ACK),
            (I_URG, tcp::URG),
        ];
        for (i, bit) in bits {
            if matches!(get(i), Some(Value::Bool(true))) {
                flags |= bit;
            }
        }
    }
    let (ti, ci, ii) = if proto == 58 {
        (I_ICMP6_TYPE, I_ICMP6_CODE, I_ICMP6_ID)
    } else {
        (I_ICMP_TYPE, I_ICMP_CODE, I_ICMP_ID)
    };
    let icmp = match proto {
        1 | 58 => match (get_u64(ti), get_u64(ci)) {
            (Some(t), Some(c)) => Some((t as u8, c as u8)),
            _ => None,
        },
        _ => None,
    };
    // The echo identifier keeps concurrent pings between the same hosts
    // apart; it sits on the requester's side of the key, so request and
    // reply find one flow and tell their direction even when both ends
    // have one address (loopback).
    let (sport, dport) = match icmp.map(|(t, _)| (t, u16_of(ii))) {
        Some((8 | 128, Some(id))) => (Some(id), Some(0)),
        Some((0 | 129, Some(id))) => (Some(0), Some(id)),
        _ => (sport, dport),
    };
    // BASE decodes a later IPv4 fragment's payload as a layer-4 header
    // (as ulogd does): those ports are data, never used.
    let (sport, dport, icmp, flags) = match frag {
        Frag::No => (sport, dport, icmp, flags),
        Frag::First(k) => {
            let l4 = (sport.unwrap_or(0), dport.unwrap_or(0), icmp);
            frags.first(k, l4);
            (sport, dport, icmp, flags)
        }
        Frag::Later(k) => match frags.later(&k) {
            Some((sp, dp, ic)) => (Some(sp), Some(dp), ic, 0),
            None => (None, None, None, 0),
        },
    };
    let time = match get_u64(I_SEC) {
        Some(sec) => sec * 1_000_000 + get_u64(I_USEC).unwrap_or(0),
        None => {
            let (sec, usec) = rulogd_plugin::now_sec_usec();
            sec as u64 * 1_000_000 + usec as u64
        }
    };
    Some(Packet {
        family,
        proto,
        src,
        dst,
        sport: sport.unwrap_or(0),
        dport: dport.unwrap_or(0),
        vlan: u16_of(I_VLAN).unwrap_or(0) & 0x0fff,
        bytes,
        flags,
        icmp,
        time,
    })
}
