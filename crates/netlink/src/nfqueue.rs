//! nfnetlink_queue (NFQUEUE) messages: packet parsing, configuration
//! requests and batch verdicts.
//!
//! Constants are the kernel UAPI's (`linux/netfilter/nfnetlink_queue.h`).
//! As for NFLOG, a parsed [`QueuePacket`] holds integers and [`Span`]s into
//! the buffer it came from; nothing is copied. Acknowledgements and errors
//! are decoded by the walker shared with NFLOG ([`super::nflog::messages`]),
//! so there is one netlink parser in the crate.

pub use super::HwAddr;
use super::{
    finish_msg, headers, parse_nlmsgerr, put_attr, start_msg, Attrs, NfGenMsg, NlHeader,
    ParseError, NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST,
};
use rulogd_plugin::Span;

/// nfnetlink subsystem id of nfnetlink_queue.
pub const NFNL_SUBSYS_QUEUE: u16 = 3;
/// `nlmsg_type` of a queued packet (kernel to userspace).
pub const MSG_PACKET: u16 = NFNL_SUBSYS_QUEUE << 8;
/// `nlmsg_type` of a single-packet verdict.
pub const MSG_VERDICT: u16 = (NFNL_SUBSYS_QUEUE << 8) | 1;
/// `nlmsg_type` of a configuration request.
pub const MSG_CONFIG: u16 = (NFNL_SUBSYS_QUEUE << 8) | 2;
/// `nlmsg_type` of a verdict for every packet up to an id.
pub const MSG_VERDICT_BATCH: u16 = (NFNL_SUBSYS_QUEUE << 8) | 3;

/// `NF_ACCEPT`: let the packet continue.
pub const NF_ACCEPT: u32 = 1;

/// Packet attribute types (`enum nfqnl_attr_type`).
pub mod attr {
    /// `struct nfqnl_msg_packet_hdr`: packet_id (be32), hw_protocol (be16), hook (u8).
    pub const PACKET_HDR: u16 = 1;
    /// `struct nfqnl_msg_verdict_hdr`: verdict (be32), id (be32).
    pub const VERDICT_HDR: u16 = 2;
    /// be32 skb mark (in packets; in verdicts, the mark to set).
    pub const MARK: u16 = 3;
    /// `struct nfqnl_msg_packet_timestamp`: sec (be64), usec (be64).
    pub const TIMESTAMP: u16 = 4;
    /// be32 input ifindex.
    pub const IFINDEX_INDEV: u16 = 5;
    /// be32 output ifindex.
    pub const IFINDEX_OUTDEV: u16 = 6;
    /// be32 bridge port input ifindex.
    pub const IFINDEX_PHYSINDEV: u16 = 7;
    /// be32 bridge port output ifindex.
    pub const IFINDEX_PHYSOUTDEV: u16 = 8;
    /// `struct nfqnl_msg_packet_hw`: addrlen (be16), pad, addr[8].
    pub const HWADDR: u16 = 9;
    /// The packet from its network header on, up to the copy range.
    pub const PAYLOAD: u16 = 10;
    /// Nested conntrack attributes.
    pub const CT: u16 = 11;
    /// be32 `enum ip_conntrack_info`.
    pub const CT_INFO: u16 = 12;
    /// be32 length of the packet before the copy range cut it.
    pub const CAP_LEN: u16 = 13;
    /// be32 `NFQA_SKB_*` flags.
    pub const SKB_INFO: u16 = 14;
    /// be32 socket owner uid.
    pub const UID: u16 = 16;
    /// be32 socket owner gid.
    pub const GID: u16 = 17;
    /// The whole link-layer header (bridge family only).
    pub const L2HDR: u16 = 20;
}

/// Configuration attribute types (`enum nfqnl_attr_config`).
pub mod cfg {
    /// `struct nfqnl_msg_config_cmd`: command (u8), pad, pf (be16).
    pub const CMD: u16 = 1;
    /// `struct nfqnl_msg_config_params`: copy_range (be32), copy_mode (u8).
    pub const PARAMS: u16 = 2;
    /// be32 maximum number of packets waiting for a verdict.
    pub const QUEUE_MAXLEN: u16 = 3;
    /// be32 which flags a `FLAGS` attribute changes.
    pub const MASK: u16 = 4;
    /// be32 the new values of those flags.
    pub const FLAGS: u16 = 5;

    /// Command: bind the queue in `res_id` to this socket.
    pub const CMD_BIND: u8 = 1;
    /// Command: unbind it.
    pub const CMD_UNBIND: u8 = 2;

    /// Copy mode: metadata and the packet, up to the copy range.
    pub const COPY_PACKET: u8 = 2;

    /// Accept packets instead of dropping them when the queue is full or
    /// the socket cannot take them.
    pub const F_FAIL_OPEN: u32 = 1 << 0;
    /// Attach the conntrack entry (`NFQA_CT`, `NFQA_CT_INFO`).
    pub const F_CONNTRACK: u32 = 1 << 1;
    /// Hand GSO packets over whole instead of segmenting them first.
    pub const F_GSO: u32 = 1 << 2;
    /// Add the owning socket's uid and gid.
    pub const F_UID_GID: u32 = 1 << 3;
}

/// One queued packet, decoded in a single pass; spans point into the buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueuePacket {
    /// The whole netlink message, header included.
    pub msg: Span,
    /// `nfgen_family`: 2 IPv4, 10 IPv6, 7 bridge.
    pub family: u8,
    /// `res_id`: the queue number, host order.
    pub queue: u16,
    /// The packet id a verdict must name (from `NFQA_PACKET_HDR`).
    pub id: u32,
    /// Link-layer protocol (ethertype), host order.
    pub hw_protocol: u16,
    /// Netfilter hook number.
    pub hook: u8,
    /// `NFQA_MARK`.
    pub mark: Option<u32>,
    /// `NFQA_TIMESTAMP` as (seconds, microseconds).
    pub timestamp: Option<(u64, u64)>,
    /// `NFQA_IFINDEX_INDEV`.
    pub indev: Option<u32>,
    /// `NFQA_IFINDEX_OUTDEV`.
    pub outdev: Option<u32>,
    /// `NFQA_HWADDR`.
    pub hwaddr: Option<HwAddr>,
    /// `NFQA_PAYLOAD`.
    pub payload: Option<Span>,
    /// `NFQA_CAP_LEN`: the full length when the payload was cut.
    pub cap_len: Option<u32>,
    /// `NFQA_UID`.
    pub uid: Option<u32>,
    /// `NFQA_GID`.
    pub gid: Option<u32>,
    /// `NFQA_CT` payload (nested conntrack attributes).
    pub ct: Option<Span>,
    /// `NFQA_L2HDR`.
    pub l2hdr: Option<Span>,
}

/// Why a queued packet message could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The framing or an attribute is malformed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The message has no `NFQA_PACKET_HDR`, so no packet id to answer.
    #[error("queued packet at offset {offset} has no packet header")]
    NoPacketHeader {
        /// Where the message starts.
        offset: usize,
    },
}

/// Parses the queued-packet message whose checked header is `h`.
pub fn parse_packet_at(buf: &[u8], h: &NlHeader) -> Result<QueuePacket, QueueError> {
    let nfgen = NfGenMsg::parse(buf, h)?;
    let mut p = QueuePacket {
        msg: Span::new(h.offset, h.len as usize),
        family: nfgen.family,
        queue: nfgen.res_id,
        ..QueuePacket::default()
    };
    let mut have_hdr = false;
    for a in Attrs::new(buf, nfgen.attrs, h.end()) {
        let a = a?;
        match a.kind {
            attr::PACKET_HDR => {
                let b = a.bytes(buf, 7)?;
                p.id = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                p.hw_protocol = u16::from_be_bytes([b[4], b[5]]);
                p.hook = b[6];
                have_hdr = true;
            }
            attr::MARK => p.mark = Some(a.be32(buf)?),
            attr::TIMESTAMP => p.timestamp = Some(a.timestamp(buf)?),
            attr::IFINDEX_INDEV => p.indev = Some(a.be32(buf)?),
            attr::IFINDEX_OUTDEV => p.outdev = Some(a.be32(buf)?),
            attr::HWADDR => p.hwaddr = Some(a.hwaddr(buf)?),
            attr::PAYLOAD => p.payload = Some(Span::new(a.payload, a.len)),
            attr::CAP_LEN => p.cap_len = Some(a.be32(buf)?),
            attr::UID => p.uid = Some(a.be32(buf)?),
            attr::GID => p.gid = Some(a.be32(buf)?),
            attr::CT => p.ct = Some(Span::new(a.payload, a.len)),
            attr::L2HDR => p.l2hdr = Some(Span::new(a.payload, a.len)),
            // Physical devices, skb info, security context, VLAN: no key.
            _ => {}
        }
    }
    if !have_hdr {
        return Err(QueueError::NoPacketHeader { offset: h.offset });
    }
    Ok(p)
}

/// One message of a receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueMessage {
    /// A queued packet.
    Packet(QueuePacket),
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

/// Walks every netlink message in one datagram. A malformed packet yields
/// `Err` and the walk goes on; a bad message length ends it.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Result<QueueMessage, QueueError>> + '_ {
    headers(buf).map(move |h| {
        let h = h?;
        match h.kind {
            MSG_PACKET => parse_packet_at(buf, &h).map(QueueMessage::Packet),
            NLMSG_ERROR => parse_nlmsgerr(buf, &h)
                .map(|(errno, seq)| QueueMessage::Error { errno, seq })
                .map_err(QueueError::from),
            k => Ok(QueueMessage::Other(k)),
        }
    })
}

/// One setting sent in a queue configuration request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    /// A `NFQNL_CFG_CMD_*` command.
    Cmd(u8),
    /// Copy mode and range.
    Params {
        /// `NFQNL_COPY_*`.
        mode: u8,
        /// Bytes of each packet to copy.
        range: u32,
    },
    /// Packets that may wait for a verdict.
    MaxLen(u32),
    /// Sets the `NFQA_CFG_F_*` flags in `mask` to their values in `flags`.
    Flags {
        /// Which flags to change.
        mask: u32,
        /// Their new values.
        flags: u32,
    },
}

/// Builds one configuration request (with `NLM_F_ACK`) for `queue` carrying
/// every setting in `settings`; the kernel applies them in attribute order
/// and answers once.
pub fn config_request(out: &mut Vec<u8>, seq: u32, queue: u16, settings: &[Config]) {
    let start = start_msg(out, MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq);
    nfgen(out, queue);
    for setting in settings {
        match *setting {
            Config::Cmd(c) => put_attr(out, cfg::CMD, &[c, 0, 0, 0]),
            Config::Params { mode, range } => {
                let r = range.to_be_bytes();
                put_attr(out, cfg::PARAMS, &[r[0], r[1], r[2], r[3], mode]);
            }
            Config::MaxLen(n) => put_attr(out, cfg::QUEUE_MAXLEN, &n.to_be_bytes()),
            Config::Flags { mask, flags } => {
                put_attr(out, cfg::MASK, &mask.to_be_bytes());
                put_attr(out, cfg::FLAGS, &flags.to_be_bytes());
            }
        }
    }
    finish_msg(out, start);
}

/// Builds a batch verdict: `verdict` for every packet of `queue` whose id is
/// `max_id` or earlier, setting the mark too when `mark` is given. No
/// acknowledgement is asked for; the kernel still reports errors.
pub fn verdict_batch(
    out: &mut Vec<u8>,
    seq: u32,
    queue: u16,
    max_id: u32,
    verdict: u32,
    mark: Option<u32>,
) {
    let start = start_msg(out, MSG_VERDICT_BATCH, NLM_F_REQUEST, seq);
    nfgen(out, queue);
    let (v, id) = (verdict.to_be_bytes(), max_id.to_be_bytes());
    put_attr(
        out,
        attr::VERDICT_HDR,
        &[v[0], v[1], v[2], v[3], id[0], id[1], id[2], id[3]],
    );
    if let Some(m) = mark {
        put_attr(out, attr::MARK, &m.to_be_bytes());
    }
    finish_msg(out, start);
}

/// `struct nfgenmsg`: AF_UNSPEC, NFNETLINK_V0, the queue number (be16).
fn nfgen(out: &mut Vec<u8>, queue: u16) {
    out.push(libc::AF_UNSPEC as u8);
    out.push(0);
    out.extend_from_slice(&queue.to_be_bytes());
}
