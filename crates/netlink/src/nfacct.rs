//! nfnetlink_acct (nfacct) messages: accounting objects in dump replies,
//! and the dump request NFACCT sends.
//!
//! Constants are the kernel UAPI's (`linux/netfilter/nfnetlink_acct.h`).
//! As in the rest of this layer, lengths are checked once, values are
//! decoded or kept as spans into the receive buffer, and nothing panics.

use super::{
    dump_msg, headers, parse_nlmsgerr, Attrs, NfGenMsg, NlHeader, ParseError, NLMSG_DONE,
    NLMSG_ERROR,
};
use rulogd_plugin::Span;

/// nfnetlink subsystem id of nfnetlink_acct.
pub const NFNL_SUBSYS_ACCT: u16 = 7;
/// An object (also every object of a dump).
pub const NFNL_MSG_ACCT_NEW: u16 = 0;
/// Get the objects (with `NLM_F_DUMP`: all of them).
pub const NFNL_MSG_ACCT_GET: u16 = 1;
/// Get the objects and zero their counters atomically.
pub const NFNL_MSG_ACCT_GET_CTRZERO: u16 = 2;
/// `nlmsg_type` of an object message.
pub const MSG_NEW: u16 = (NFNL_SUBSYS_ACCT << 8) | NFNL_MSG_ACCT_NEW;
pub use super::NLM_F_DUMP;

/// Object attributes (`enum nfnl_acct_type`).
pub mod attr {
    /// NUL-terminated name (at most 32 bytes with the NUL).
    pub const NAME: u16 = 1;
    /// be64 packets.
    pub const PKTS: u16 = 2;
    /// be64 bytes.
    pub const BYTES: u16 = 3;
    /// be32 reference count.
    pub const USE: u16 = 4;
    /// be32 `NFACCT_F_*` flags.
    pub const FLAGS: u16 = 5;
    /// be64 quota.
    pub const QUOTA: u16 = 6;
}

/// One accounting object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcctObject {
    /// The name, cut at its first NUL.
    pub name: Option<Span>,
    /// Packets counted.
    pub pkts: Option<u64>,
    /// Bytes counted.
    pub bytes: Option<u64>,
    /// Rules using it.
    pub refs: Option<u32>,
    /// `NFACCT_F_*` flags.
    pub flags: Option<u32>,
    /// Quota, when one is set.
    pub quota: Option<u64>,
    /// The object's attributes (key `sum`).
    pub attrs: Span,
}

/// Parses the object message whose checked header is `h`; spans are into `buf`.
pub fn parse_object_at(buf: &[u8], h: &NlHeader) -> Result<AcctObject, ParseError> {
    let end = h.end();
    let astart = NfGenMsg::parse(buf, h)?.attrs;
    let mut o = AcctObject {
        attrs: Span::new(astart, end - astart),
        ..AcctObject::default()
    };
    for a in Attrs::new(buf, astart, end) {
        let a = a?;
        match a.kind {
            attr::NAME => o.name = Some(a.c_str(buf)),
            attr::PKTS => o.pkts = Some(a.be64(buf)?),
            attr::BYTES => o.bytes = Some(a.be64(buf)?),
            attr::USE => o.refs = Some(a.be32(buf)?),
            attr::FLAGS => o.flags = Some(a.be32(buf)?),
            attr::QUOTA => o.quota = Some(a.be64(buf)?),
            _ => {}
        }
    }
    Ok(o)
}

/// Parses one object message that starts at the beginning of `msg`.
pub fn parse_object(msg: &[u8]) -> Result<AcctObject, ParseError> {
    let h = NlHeader::parse(msg, 0)?;
    parse_object_at(msg, &h)
}

/// One message of an nfacct receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// An accounting object.
    Object(AcctObject),
    /// The end of a dump.
    Done,
    /// An error or, with `errno` 0, an acknowledgement.
    Error {
        /// Positive errno.
        errno: i32,
    },
    /// Any other message type (skipped).
    Other(u16),
}

/// Walks every message of one datagram, with each header's sequence number.
/// A malformed object yields `Err` and the walk goes on; a bad message
/// length yields `Err` and ends it.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Result<(Message, u32), ParseError>> + '_ {
    headers(buf).map(move |h| {
        let h = h?;
        let m = match h.kind {
            MSG_NEW => parse_object_at(buf, &h).map(Message::Object),
            NLMSG_DONE => Ok(Message::Done),
            NLMSG_ERROR => parse_nlmsgerr(buf, &h).map(|(errno, _)| Message::Error { errno }),
            k => Ok(Message::Other(k)),
        };
        m.map(|m| (m, h.seq))
    })
}

/// Builds a dump request for every object; with `zero` the counters are
/// read and reset at once.
pub fn dump_request(out: &mut Vec<u8>, seq: u32, zero: bool) {
    let kind = if zero {
        NFNL_MSG_ACCT_GET_CTRZERO
    } else {
        NFNL_MSG_ACCT_GET
    };
    dump_msg(out, (NFNL_SUBSYS_ACCT << 8) | kind, seq);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{finish_msg, put_attr, start_msg};

    /// An object message as the kernel writes it.
    pub(crate) fn object(out: &mut Vec<u8>, name: &[u8], pkts: u64, bytes: u64) {
        let start = start_msg(out, MSG_NEW, 0x2, 77);
        out.extend_from_slice(&[0, 0, 0, 0]);
        let mut n = name.to_vec();
        n.push(0);
        put_attr(out, attr::NAME, &n);
        put_attr(out, attr::PKTS, &pkts.to_be_bytes());
        put_attr(out, attr::BYTES, &bytes.to_be_bytes());
        put_attr(out, attr::USE, &1u32.to_be_bytes());
        finish_msg(out, start);
    }

    #[test]
    fn parses_objects_and_done() {
        let mut b = Vec::new();
        object(&mut b, b"ulogtest_a", 3, 93);
        object(&mut b, b"other", 0, 0);
        let st = start_msg(&mut b, NLMSG_DONE, 0x2, 77);
        b.extend_from_slice(&[0; 4]);
        finish_msg(&mut b, st);
        let ms: Vec<_> = messages(&b).map(|m| m.unwrap().0).collect();
        assert_eq!(ms.len(), 3);
        let Message::Object(o) = ms[0] else { panic!() };
        let name = &b[o.name.unwrap().off as usize..][..o.name.unwrap().len as usize];
        assert_eq!(name, b"ulogtest_a");
        assert_eq!((o.pkts, o.bytes, o.refs), (Some(3), Some(93), Some(1)));
        assert_eq!(ms[2], Message::Done);
        // Every truncation: an error or fewer messages, never a panic.
        for cut in 0..b.len() {
            let _ = messages(&b[..cut]).count();
            let _ = parse_object(&b[..cut]);
        }
        let mut r = Vec::new();
        dump_request(&mut r, 5, true);
        let h = NlHeader::parse(&r, 0).unwrap();
        assert_eq!((h.kind, h.flags, h.seq), (0x702, 0x301, 5));
    }
}
