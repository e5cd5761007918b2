//! ctnetlink (nfnetlink_conntrack) messages: conntrack entries as events and
//! dump replies, and the requests NFCT sends (dump, dump-and-zero, get).
//!
//! Constants are the kernel UAPI's (`linux/netfilter/nfnetlink_conntrack.h`,
//! `nfnetlink.h`). A parsed [`Conntrack`] is a small `Copy` value: integers
//! and addresses decoded once, plus the [`Span`] of its attributes so a
//! record can point at the raw entry without copying it. As everywhere in
//! this layer, lengths are checked once and nothing panics on kernel bytes.

use super::{
    dump_msg, finish_msg, headers, parse_nlmsgerr, put_attr, start_msg, Attr, Attrs, NfGenMsg,
    NlHeader, ParseError, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST,
};
use rulogd_plugin::Span;

/// nfnetlink subsystem id of ctnetlink.
pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// A new or updated entry (also every entry of a dump).
pub const IPCTNL_MSG_CT_NEW: u16 = 0;
/// Get one entry, or all of them with `NLM_F_DUMP`.
pub const IPCTNL_MSG_CT_GET: u16 = 1;
/// A destroyed entry.
pub const IPCTNL_MSG_CT_DELETE: u16 = 2;
/// Dump and zero the counters atomically.
pub const IPCTNL_MSG_CT_GET_CTRZERO: u16 = 3;

/// `nlmsg_type` of an entry message (event or dump reply).
pub const MSG_NEW: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
/// `nlmsg_type` of a destroy event.
pub const MSG_DELETE: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;

pub use super::NLM_F_DUMP;
/// `nlmsg_flags` of a NEW event: the entry was created (`NLM_F_CREATE`).
pub const NLM_F_CREATE: u16 = 0x400;
/// `nlmsg_flags` of a NEW event (`NLM_F_EXCL`).
pub const NLM_F_EXCL: u16 = 0x200;

/// Multicast groups (`enum nfnetlink_groups`).
pub const NFNLGRP_CONNTRACK_NEW: u32 = 1;
/// Updates (status, mark, counters on `conntrack -U`, …).
pub const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
/// Destroyed entries.
pub const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;

/// Top-level attributes (`enum ctattr_type`).
pub mod cta {
    /// Nested original-direction tuple.
    pub const TUPLE_ORIG: u16 = 1;
    /// Nested reply-direction tuple.
    pub const TUPLE_REPLY: u16 = 2;
    /// be32 `IPS_*` status bits.
    pub const STATUS: u16 = 3;
    /// be32 connection mark.
    pub const MARK: u16 = 8;
    /// Nested original-direction counters.
    pub const COUNTERS_ORIG: u16 = 9;
    /// Nested reply-direction counters.
    pub const COUNTERS_REPLY: u16 = 10;
    /// be32 entry id.
    pub const ID: u16 = 12;
    /// be16 conntrack zone.
    pub const ZONE: u16 = 18;
    /// Nested start/stop timestamps.
    pub const TIMESTAMP: u16 = 20;
}

/// Tuple attributes (`enum ctattr_tuple`, `ctattr_ip`, `ctattr_l4proto`).
pub mod tuple {
    /// Nested addresses.
    pub const IP: u16 = 1;
    /// Nested layer-4 protocol data.
    pub const PROTO: u16 = 2;
    /// be16 zone of this direction.
    pub const ZONE: u16 = 3;
    /// be32 IPv4 source.
    pub const IP_V4_SRC: u16 = 1;
    /// be32 IPv4 destination.
    pub const IP_V4_DST: u16 = 2;
    /// IPv6 source (16 bytes).
    pub const IP_V6_SRC: u16 = 3;
    /// IPv6 destination (16 bytes).
    pub const IP_V6_DST: u16 = 4;
    /// u8 layer-4 protocol number.
    pub const PROTO_NUM: u16 = 1;
    /// be16 source port.
    pub const PROTO_SRC_PORT: u16 = 2;
    /// be16 destination port.
    pub const PROTO_DST_PORT: u16 = 3;
    /// be16 ICMP echo id.
    pub const PROTO_ICMP_ID: u16 = 4;
    /// u8 ICMP type.
    pub const PROTO_ICMP_TYPE: u16 = 5;
    /// u8 ICMP code.
    pub const PROTO_ICMP_CODE: u16 = 6;
    /// be16 ICMPv6 echo id.
    pub const PROTO_ICMPV6_ID: u16 = 7;
    /// u8 ICMPv6 type.
    pub const PROTO_ICMPV6_TYPE: u16 = 8;
    /// u8 ICMPv6 code.
    pub const PROTO_ICMPV6_CODE: u16 = 9;
}

/// Counter and timestamp attributes (nested in `CTA_COUNTERS_*`, `CTA_TIMESTAMP`).
pub mod nested {
    /// be64 packets.
    pub const COUNTERS_PACKETS: u16 = 1;
    /// be64 bytes.
    pub const COUNTERS_BYTES: u16 = 2;
    /// be32 packets (kernels before 2.6.36 with 32-bit counters).
    pub const COUNTERS32_PACKETS: u16 = 3;
    /// be32 bytes (same).
    pub const COUNTERS32_BYTES: u16 = 4;
    /// be64 nanoseconds since the epoch when the entry was confirmed.
    pub const TIMESTAMP_START: u16 = 1;
    /// be64 nanoseconds since the epoch when the entry died.
    pub const TIMESTAMP_STOP: u16 = 2;
}

/// One direction of a connection: addresses and layer-4 identity.
///
/// Addresses are 16 bytes; an IPv4 address fills the first four (the
/// message's family says which). Fields the message lacked are zero / `None`,
/// which is what ulogd reads from libnetfilter_conntrack for an unset attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Layer-4 protocol number.
    pub proto: u8,
    /// Source port (TCP, UDP, UDP-Lite, SCTP, DCCP), host order.
    pub sport: u16,
    /// Destination port, host order.
    pub dport: u16,
    /// ICMP or ICMPv6 echo id.
    pub icmp_id: u16,
    /// ICMP or ICMPv6 type.
    pub icmp_type: u8,
    /// ICMP or ICMPv6 code.
    pub icmp_code: u8,
    /// Per-direction zone (`CTA_TUPLE_ZONE`).
    pub zone: u16,
}

/// Packet and byte counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets.
    pub packets: u64,
    /// Bytes (layer 3 and up).
    pub bytes: u64,
}

/// What a message says happened to the entry (ulogd's `ct.event` numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtEvent {
    /// Created (`IPCTNL_MSG_CT_NEW` with `NLM_F_CREATE` or `NLM_F_EXCL`).
    New = 1,
    /// Changed, or an entry of a dump (`IPCTNL_MSG_CT_NEW` without those flags).
    Update = 2,
    /// Destroyed (`IPCTNL_MSG_CT_DELETE`).
    Destroy = 4,
}

/// One conntrack entry as a ctnetlink message describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conntrack {
    /// NEW, UPDATE or DESTROY, from the message type and flags.
    pub event: CtEvent,
    /// `nfgen_family`: 2 IPv4, 10 IPv6.
    pub family: u8,
    /// The attributes after the family header (what ulogd's `ct` object holds).
    pub attrs: Span,
    /// `CTA_TUPLE_ORIG`.
    pub orig: Option<Tuple>,
    /// `CTA_TUPLE_REPLY`.
    pub reply: Option<Tuple>,
    /// `CTA_STATUS`.
    pub status: Option<u32>,
    /// `CTA_MARK`.
    pub mark: Option<u32>,
    /// `CTA_ID`.
    pub id: Option<u32>,
    /// `CTA_ZONE`.
    pub zone: Option<u16>,
    /// `CTA_COUNTERS_ORIG` (present only with `nf_conntrack_acct=1`).
    pub counters_orig: Option<Counters>,
    /// `CTA_COUNTERS_REPLY`.
    pub counters_reply: Option<Counters>,
    /// `CTA_TIMESTAMP_START` in ns (only with `nf_conntrack_timestamp=1`).
    pub start_ns: Option<u64>,
    /// `CTA_TIMESTAMP_STOP` in ns (destroy events only).
    pub stop_ns: Option<u64>,
}

#[inline]
fn u8_of(a: &Attr, buf: &[u8]) -> Result<u8, ParseError> {
    a.bytes(buf, 1).map(|b| b[0])
}

fn parse_tuple(a: &Attr, buf: &[u8]) -> Result<Tuple, ParseError> {
    let mut t = Tuple::default();
    for x in a.nested(buf) {
        let x = x?;
        match x.kind {
            tuple::IP => {
                for y in x.nested(buf) {
                    let y = y?;
                    match y.kind {
                        tuple::IP_V4_SRC => t.src[..4].copy_from_slice(y.bytes(buf, 4)?),
                        tuple::IP_V4_DST => t.dst[..4].copy_from_slice(y.bytes(buf, 4)?),
                        tuple::IP_V6_SRC => t.src.copy_from_slice(y.bytes(buf, 16)?),
                        tuple::IP_V6_DST => t.dst.copy_from_slice(y.bytes(buf, 16)?),
                        _ => {}
                    }
                }
            }
            tuple::PROTO => {
                for y in x.nested(buf) {
                    let y = y?;
                    match y.kind {
                        tuple::PROTO_NUM => t.proto = u8_of(&y, buf)?,
                        tuple::PROTO_SRC_PORT => t.sport = y.be16(buf)?,
                        tuple::PROTO_DST_PORT => t.dport = y.be16(buf)?,
                        tuple::PROTO_ICMP_ID | tuple::PROTO_ICMPV6_ID => t.icmp_id = y.be16(buf)?,
                        tuple::PROTO_ICMP_TYPE | tuple::PROTO_ICMPV6_TYPE => {
                            t.icmp_type = u8_of(&y, buf)?
                        }
                        tuple::PROTO_ICMP_CODE | tuple::PROTO_ICMPV6_CODE => {
                            t.icmp_code = u8_of(&y, buf)?
                        }
                        _ => {}
                    }
                }
            }
            tuple::ZONE => t.zone = x.be16(buf)?,
            _ => {}
        }
    }
    Ok(t)
}

fn parse_counters(a: &Attr, buf: &[u8]) -> Result<Counters, ParseError> {
    let mut c = Counters::default();
    for x in a.nested(buf) {
        let x = x?;
        match x.kind {
            nested::COUNTERS_PACKETS => c.packets = x.be64(buf)?,
            nested::COUNTERS_BYTES => c.bytes = x.be64(buf)?,
            nested::COUNTERS32_PACKETS => c.packets = u64::from(x.be32(buf)?),
            nested::COUNTERS32_BYTES => c.bytes = u64::from(x.be32(buf)?),
            _ => {}
        }
    }
    Ok(c)
}

/// Parses the entry message whose checked header is `h`; spans are into `buf`.
///
/// The message type is mapped to an event but not otherwise checked, so a
/// dump reply and an event parse alike.
pub fn parse_conntrack_at(buf: &[u8], h: &NlHeader) -> Result<Conntrack, ParseError> {
    let end = h.end();
    let nfgen = NfGenMsg::parse(buf, h)?;
    let event = match (h.kind & 0xff, h.flags & (NLM_F_CREATE | NLM_F_EXCL)) {
        (IPCTNL_MSG_CT_DELETE, _) => CtEvent::Destroy,
        (_, 0) => CtEvent::Update,
        _ => CtEvent::New,
    };
    let astart = nfgen.attrs;
    let mut c = Conntrack {
        event,
        family: nfgen.family,
        attrs: Span::new(astart, end - astart),
        orig: None,
        reply: None,
        status: None,
        mark: None,
        id: None,
        zone: None,
        counters_orig: None,
        counters_reply: None,
        start_ns: None,
        stop_ns: None,
    };
    for a in Attrs::new(buf, astart, end) {
        let a = a?;
        match a.kind {
            cta::TUPLE_ORIG => c.orig = Some(parse_tuple(&a, buf)?),
            cta::TUPLE_REPLY => c.reply = Some(parse_tuple(&a, buf)?),
            cta::STATUS => c.status = Some(a.be32(buf)?),
            cta::MARK => c.mark = Some(a.be32(buf)?),
            cta::ID => c.id = Some(a.be32(buf)?),
            cta::ZONE => c.zone = Some(a.be16(buf)?),
            cta::COUNTERS_ORIG => c.counters_orig = Some(parse_counters(&a, buf)?),
            cta::COUNTERS_REPLY => c.counters_reply = Some(parse_counters(&a, buf)?),
            cta::TIMESTAMP => {
                for x in a.nested(buf) {
                    let x = x?;
                    match x.kind {
                        nested::TIMESTAMP_START => c.start_ns = Some(x.be64(buf)?),
                        nested::TIMESTAMP_STOP => c.stop_ns = Some(x.be64(buf)?),
                        _ => {}
                    }
                }
            }
            // Protocol state, helpers, NAT data, labels…: no ulogd key.
            _ => {}
        }
    }
    Ok(c)
}

/// Parses one entry message that starts at the beginning of `msg`.
pub fn parse_conntrack(msg: &[u8]) -> Result<Conntrack, ParseError> {
    let h = NlHeader::parse(msg, 0)?;
    parse_conntrack_at(msg, &h)
}

/// One message of a ctnetlink receive buffer.
// Boxing the entry would allocate per event; the value lives on the stack
// for one iteration only.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// An entry: an event, a dump reply or the answer to a get.
    Entry(Conntrack),
    /// The end of a dump.
    Done {
        /// Sequence number of the dump request.
        seq: u32,
    },
    /// An error or, with `errno` 0, an acknowledgement of request `seq`.
    Error {
        /// Positive errno, 0 for an acknowledgement.
        errno: i32,
        /// Sequence number of the request it answers.
        seq: u32,
    },
    /// Any other message type (skipped).
    Other(u16),
}

/// Walks every netlink message of one datagram. Each entry also comes with
/// its header's sequence number (dump replies carry the request's).
///
/// A message with malformed attributes yields `Err` and the walk goes on; a
/// bad message length yields `Err` and ends it (the next message cannot be
/// found).
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Result<(Message, u32), ParseError>> + '_ {
    headers(buf).map(move |h| {
        let h = h?;
        let m = match h.kind {
            MSG_NEW | MSG_DELETE => parse_conntrack_at(buf, &h).map(Message::Entry),
            NLMSG_DONE => Ok(Message::Done { seq: h.seq }),
            NLMSG_ERROR => {
                parse_nlmsgerr(buf, &h).map(|(errno, seq)| Message::Error { errno, seq })
            }
            k => Ok(Message::Other(k)),
        };
        m.map(|m| (m, h.seq))
    })
}

/// Builds a dump request for every family: the whole table, or with
/// `zero` the table with every counter read and reset at once.
pub fn dump_request(out: &mut Vec<u8>, seq: u32, zero: bool) {
    let kind = if zero {
        IPCTNL_MSG_CT_GET_CTRZERO
    } else {
        IPCTNL_MSG_CT_GET
    };
    dump_msg(out, (NFNL_SUBSYS_CTNETLINK << 8) | kind, seq);
}

fn put_tuple(out: &mut Vec<u8>, family: u8, t: &Tuple) {
    let mut ip = Vec::with_capacity(40);
    if family == libc::AF_INET6 as u8 {
        put_attr(&mut ip, tuple::IP_V6_SRC, &t.src);
        put_attr(&mut ip, tuple::IP_V6_DST, &t.dst);
    } else {
        put_attr(&mut ip, tuple::IP_V4_SRC, &t.src[..4]);
        put_attr(&mut ip, tuple::IP_V4_DST, &t.dst[..4]);
    }
    let mut proto = Vec::with_capacity(32);
    put_attr(&mut proto, tuple::PROTO_NUM, &[t.proto]);
    match t.proto {
        1 | 58 => {
            let (id, ty, code) = if t.proto == 1 {
                (
                    tuple::PROTO_ICMP_ID,
                    tuple::PROTO_ICMP_TYPE,
                    tuple::PROTO_ICMP_CODE,
                )
            } else {
                (
                    tuple::PROTO_ICMPV6_ID,
                    tuple::PROTO_ICMPV6_TYPE,
                    tuple::PROTO_ICMPV6_CODE,
                )
            };
            put_attr(&mut proto, id, &t.icmp_id.to_be_bytes());
            put_attr(&mut proto, ty, &[t.icmp_type]);
            put_attr(&mut proto, code, &[t.icmp_code]);
        }
        _ => {
            put_attr(&mut proto, tuple::PROTO_SRC_PORT, &t.sport.to_be_bytes());
            put_attr(&mut proto, tuple::PROTO_DST_PORT, &t.dport.to_be_bytes());
        }
    }
    let mut body = Vec::with_capacity(80);
    put_attr(&mut body, tuple::IP | NLA_F_NESTED, &ip);
    put_attr(&mut body, tuple::PROTO | NLA_F_NESTED, &proto);
    put_attr(out, cta::TUPLE_ORIG | NLA_F_NESTED, &body);
}

/// The nested-attribute flag the kernel sets on nests (and accepts either way).
const NLA_F_NESTED: u16 = 0x8000;

/// Builds a get request for the entry whose original tuple is `orig`, with
/// `NLM_F_ACK` so a found entry is followed by an acknowledgement and a
/// missing one answers `ENOENT`.
pub fn get_request(out: &mut Vec<u8>, seq: u32, family: u8, orig: &Tuple, zone: u16) {
    let start = start_msg(
        out,
        (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
    );
    out.extend_from_slice(&[family, 0, 0, 0]);
    put_tuple(out, family, orig);
    if zone != 0 {
        put_attr(out, cta::ZONE, &zone.to_be_bytes());
    }
    finish_msg(out, start);
}
