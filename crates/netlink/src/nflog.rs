//! nfnetlink_log (NFLOG) messages: packet parsing and configuration requests.
//!
//! Constants are the kernel UAPI's (`linux/netfilter/nfnetlink_log.h`,
//! `nfnetlink.h`). A parsed [`NflogPacket`] holds decoded integers and
//! [`Span`]s into the buffer it was parsed from; nothing is copied.

pub use super::HwAddr;
use super::{
    finish_msg, headers, parse_nlmsgerr, put_attr, start_msg, Attrs, NfGenMsg, NlHeader,
    ParseError, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST,
};
use rulogd_plugin::Span;

/// nfnetlink subsystem id of nfnetlink_log.
pub const NFNL_SUBSYS_ULOG: u16 = 4;
/// Message from the kernel carrying one logged packet.
pub const NFULNL_MSG_PACKET: u16 = 0;
/// Configuration request to the kernel.
pub const NFULNL_MSG_CONFIG: u16 = 1;
/// `nlmsg_type` of a logged packet.
pub const MSG_PACKET: u16 = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET;
/// `nlmsg_type` of a configuration request.
pub const MSG_CONFIG: u16 = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;

/// Packet attribute types (`enum nfulnl_attr_type`).
pub mod attr {
    /// `struct nfulnl_msg_packet_hdr`: hw_protocol (be16), hook (u8), pad.
    pub const PACKET_HDR: u16 = 1;
    /// be32 skb mark.
    pub const MARK: u16 = 2;
    /// `struct nfulnl_msg_packet_timestamp`: sec (be64), usec (be64).
    pub const TIMESTAMP: u16 = 3;
    /// be32 input ifindex.
    pub const IFINDEX_INDEV: u16 = 4;
    /// be32 output ifindex.
    pub const IFINDEX_OUTDEV: u16 = 5;
    /// be32 physical (bridge port) input ifindex.
    pub const IFINDEX_PHYSINDEV: u16 = 6;
    /// be32 physical (bridge port) output ifindex.
    pub const IFINDEX_PHYSOUTDEV: u16 = 7;
    /// `struct nfulnl_msg_packet_hw`: addrlen (be16), pad, addr[8].
    pub const HWADDR: u16 = 8;
    /// The packet from its network header on.
    pub const PAYLOAD: u16 = 9;
    /// NUL-terminated log prefix.
    pub const PREFIX: u16 = 10;
    /// be32 socket owner uid.
    pub const UID: u16 = 11;
    /// be32 per-instance sequence number.
    pub const SEQ: u16 = 12;
    /// be32 global sequence number.
    pub const SEQ_GLOBAL: u16 = 13;
    /// be32 socket owner gid.
    pub const GID: u16 = 14;
    /// be16 ARPHRD_* device type.
    pub const HWTYPE: u16 = 15;
    /// The link-layer header bytes.
    pub const HWHEADER: u16 = 16;
    /// be16 link-layer header length.
    pub const HWLEN: u16 = 17;
    /// Nested conntrack attributes (`nfnetlink_conntrack.h`).
    pub const CT: u16 = 18;
    /// be32 `enum ip_conntrack_info`.
    pub const CT_INFO: u16 = 19;
    /// `NFULA_VLAN` (nested: `NFULA_VLAN_PROTO`, `NFULA_VLAN_TCI`).
    pub const VLAN: u16 = 20;
    /// `NFULA_VLAN_TCI`, inside `NFULA_VLAN`.
    pub const VLAN_TCI: u16 = 2;
}

/// Configuration attribute types (`enum nfulnl_attr_config`).
pub mod cfg {
    /// `struct nfulnl_msg_config_cmd` (one u8 command).
    pub const CMD: u16 = 1;
    /// `struct nfulnl_msg_config_mode`: copy_range (be32), copy_mode (u8), pad.
    pub const MODE: u16 = 2;
    /// be32 size of the kernel's batch buffer.
    pub const NLBUFSIZ: u16 = 3;
    /// be32 flush timeout in 1/100 s.
    pub const TIMEOUT: u16 = 4;
    /// be32 packets per batch.
    pub const QTHRESH: u16 = 5;
    /// be16 `NFULNL_CFG_F_*` flags.
    pub const FLAGS: u16 = 6;

    /// Command: bind the group in `res_id` to this socket.
    pub const CMD_BIND: u8 = 1;
    /// Command: unbind the group.
    pub const CMD_UNBIND: u8 = 2;
    /// Command: become the logger of the family in `nfgen_family`.
    pub const CMD_PF_BIND: u8 = 3;
    /// Command: stop being the logger of that family.
    pub const CMD_PF_UNBIND: u8 = 4;

    /// Copy mode: the packet too, up to the copy range.
    pub const COPY_PACKET: u8 = 2;

    /// Flag: add `NFULA_SEQ`.
    pub const F_SEQ: u16 = 0x1;
    /// Flag: add `NFULA_SEQ_GLOBAL`.
    pub const F_SEQ_GLOBAL: u16 = 0x2;
    /// Flag: add the conntrack entry (`NFULA_CT`).
    pub const F_CONNTRACK: u16 = 0x4;
}

/// `struct nfulnl_msg_packet_hdr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketHdr {
    /// Link-layer protocol (ethertype), host order.
    pub hw_protocol: u16,
    /// Netfilter hook number.
    pub hook: u8,
}

/// One NFLOG packet message, decoded in a single pass.
///
/// Absent attributes are `None`; spans are offsets into the parsed buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NflogPacket {
    /// The whole netlink message, header included.
    pub msg: Span,
    /// `nlmsg_flags` (`NLM_F_MULTI` when the kernel batches).
    pub nl_flags: u16,
    /// `nfgen_family`: 2 IPv4, 10 IPv6, 7 bridge, 3 ARP.
    pub family: u8,
    /// `res_id`: the NFLOG group, host order.
    pub group: u16,
    /// `NFULA_PACKET_HDR`.
    pub hdr: Option<PacketHdr>,
    /// `NFULA_MARK`.
    pub mark: Option<u32>,
    /// `NFULA_TIMESTAMP` as (seconds, microseconds).
    pub timestamp: Option<(u64, u64)>,
    /// `NFULA_IFINDEX_INDEV`.
    pub indev: Option<u32>,
    /// `NFULA_IFINDEX_OUTDEV`.
    pub outdev: Option<u32>,
    /// `NFULA_IFINDEX_PHYSINDEV`.
    pub physindev: Option<u32>,
    /// `NFULA_IFINDEX_PHYSOUTDEV`.
    pub physoutdev: Option<u32>,
    /// `NFULA_HWADDR`.
    pub hwaddr: Option<HwAddr>,
    /// `NFULA_PAYLOAD`.
    pub payload: Option<Span>,
    /// `NFULA_PREFIX`, cut at its first NUL.
    pub prefix: Option<Span>,
    /// `NFULA_UID`.
    pub uid: Option<u32>,
    /// `NFULA_GID`.
    pub gid: Option<u32>,
    /// `NFULA_SEQ`.
    pub seq: Option<u32>,
    /// `NFULA_SEQ_GLOBAL`.
    pub seq_global: Option<u32>,
    /// `NFULA_HWTYPE`.
    pub hwtype: Option<u16>,
    /// `NFULA_HWHEADER`.
    pub hwheader: Option<Span>,
    /// `NFULA_HWLEN`.
    pub hwlen: Option<u16>,
    /// `NFULA_CT` payload (nested conntrack attributes).
    pub ct: Option<Span>,
    /// `NFULA_CT_INFO`.
    pub ct_info: Option<u32>,
    /// The VLAN id (the low 12 bits of `NFULA_VLAN_TCI`): the kernel sends
    /// it for bridged packets whose tag the NIC or the bridge took off.
    pub vlan: Option<u16>,
}

#[inline]
fn span(off: usize, len: usize) -> Span {
    Span::new(off, len)
}

/// Parses one NFLOG packet message that starts at the beginning of `msg`.
///
/// The message type is not checked, so any nfnetlink message with a family
/// header can be fed in; spans are offsets into `msg`.
pub fn parse_packet(msg: &[u8]) -> Result<NflogPacket, ParseError> {
    let h = NlHeader::parse(msg, 0)?;
    parse_packet_at(msg, &h)
}

/// Parses the packet message whose checked header is `h`; spans are into `buf`.
pub fn parse_packet_at(buf: &[u8], h: &NlHeader) -> Result<NflogPacket, ParseError> {
    let nfgen = NfGenMsg::parse(buf, h)?;
    let mut p = NflogPacket {
        msg: span(h.offset, h.len as usize),
        nl_flags: h.flags,
        family: nfgen.family,
        group: nfgen.res_id,
        ..NflogPacket::default()
    };
    for a in Attrs::new(buf, nfgen.attrs, h.end()) {
        let a = a?;
        match a.kind {
            attr::PACKET_HDR => {
                let b = a.bytes(buf, 3)?;
                p.hdr = Some(PacketHdr {
                    hw_protocol: u16::from_be_bytes([b[0], b[1]]),
                    hook: b[2],
                });
            }
            attr::MARK => p.mark = Some(a.be32(buf)?),
            attr::TIMESTAMP => p.timestamp = Some(a.timestamp(buf)?),
            attr::IFINDEX_INDEV => p.indev = Some(a.be32(buf)?),
            attr::IFINDEX_OUTDEV => p.outdev = Some(a.be32(buf)?),
            attr::IFINDEX_PHYSINDEV => p.physindev = Some(a.be32(buf)?),
            attr::IFINDEX_PHYSOUTDEV => p.physoutdev = Some(a.be32(buf)?),
            attr::HWADDR => p.hwaddr = Some(a.hwaddr(buf)?),
            attr::PAYLOAD => p.payload = Some(span(a.payload, a.len)),
            attr::PREFIX => p.prefix = Some(a.c_str(buf)),
            attr::UID => p.uid = Some(a.be32(buf)?),
            attr::GID => p.gid = Some(a.be32(buf)?),
            attr::SEQ => p.seq = Some(a.be32(buf)?),
            attr::SEQ_GLOBAL => p.seq_global = Some(a.be32(buf)?),
            attr::HWTYPE => p.hwtype = Some(a.be16(buf)?),
            attr::HWHEADER => p.hwheader = Some(span(a.payload, a.len)),
            attr::HWLEN => p.hwlen = Some(a.be16(buf)?),
            attr::CT => p.ct = Some(span(a.payload, a.len)),
            attr::CT_INFO => p.ct_info = Some(a.be32(buf)?),
            attr::VLAN => {
                for x in a.nested(buf) {
                    let x = x?;
                    if x.kind == attr::VLAN_TCI {
                        p.vlan = Some(x.be16(buf)? & 0x0fff);
                    }
                }
            }
            // L2HDR and anything newer: not exported by ulogd's keys.
            _ => {}
        }
    }
    Ok(p)
}

/// One message of a receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// A logged packet.
    Packet(NflogPacket),
    /// The end of a multipart batch.
    Done,
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

/// Walks every netlink message in a receive buffer (one datagram).
///
/// A message whose attributes are malformed yields `Err` and the walk goes on
/// with the next message; a bad message length yields `Err` and ends the walk,
/// since the next message cannot be found.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Result<Message, ParseError>> + '_ {
    headers(buf).map(move |h| {
        let h = h?;
        match h.kind {
            MSG_PACKET => parse_packet_at(buf, &h).map(Message::Packet),
            NLMSG_DONE => Ok(Message::Done),
            NLMSG_ERROR => {
                parse_nlmsgerr(buf, &h).map(|(errno, seq)| Message::Error { errno, seq })
            }
            k => Ok(Message::Other(k)),
        }
    })
}

/// One setting sent in an NFLOG configuration request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    /// A `NFULNL_CFG_CMD_*` command.
    Cmd(u8),
    /// Copy mode and range.
    Mode {
        /// `NFULNL_COPY_*`.
        mode: u8,
        /// Bytes of each packet to copy.
        range: u32,
    },
    /// Kernel batch buffer size.
    NlBufSiz(u32),
    /// Flush timeout in 1/100 s.
    Timeout(u32),
    /// Packets per batch.
    QThresh(u32),
    /// `NFULNL_CFG_F_*` flags.
    Flags(u16),
}

/// Builds a configuration request (with `NLM_F_ACK`) for `group` and `family`.
pub fn config_request(out: &mut Vec<u8>, seq: u32, family: u8, group: u16, setting: Config) {
    let start = start_msg(out, MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq);
    // nfgenmsg: family, version NFNETLINK_V0, res_id (be16).
    out.push(family);
    out.push(0);
    out.extend_from_slice(&group.to_be_bytes());
    match setting {
        Config::Cmd(c) => put_attr(out, cfg::CMD, &[c]),
        Config::Mode { mode, range } => {
            let r = range.to_be_bytes();
            put_attr(out, cfg::MODE, &[r[0], r[1], r[2], r[3], mode, 0]);
        }
        Config::NlBufSiz(v) => put_attr(out, cfg::NLBUFSIZ, &v.to_be_bytes()),
        Config::Timeout(v) => put_attr(out, cfg::TIMEOUT, &v.to_be_bytes()),
        Config::QThresh(v) => put_attr(out, cfg::QTHRESH, &v.to_be_bytes()),
        Config::Flags(v) => put_attr(out, cfg::FLAGS, &v.to_be_bytes()),
    }
    finish_msg(out, start);
}
