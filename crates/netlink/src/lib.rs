//! A small netlink layer over libc: message framing, attributes, and the
//! NFLOG messages of nfnetlink_log.
//!
//! Written in the rust-netlink manner: every length is checked once, then
//! fields are read from the checked slice, and nothing here panics on input.
//! Unlike the rust-netlink crates it never copies: parsed values are offsets
//! into the caller's receive buffer, so the records that reference them can
//! share that buffer.

pub mod conntrack;
pub mod enobufs;
pub mod nfacct;
pub mod nflog;
pub mod nfqueue;
pub mod refusal;
pub mod socket;

use rulogd_plugin::Span;
use thiserror::Error;

/// Length of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Length of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;
/// Length of `struct nfgenmsg`.
pub const NFGENMSG_LEN: usize = 4;

/// `nlmsg_type` of a no-op message.
pub const NLMSG_NOOP: u16 = 1;
/// `nlmsg_type` of an error or acknowledgement.
pub const NLMSG_ERROR: u16 = 2;
/// `nlmsg_type` that ends a multipart batch.
pub const NLMSG_DONE: u16 = 3;

/// `nlmsg_flags`: a request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `nlmsg_flags`: part of a multipart batch (ended by `NLMSG_DONE`).
pub const NLM_F_MULTI: u16 = 0x2;
/// `nlmsg_flags`: ask for an acknowledgement.
pub const NLM_F_ACK: u16 = 0x4;
/// `nlmsg_flags`: dump the whole table (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;

/// The attribute type bits, without the nested and byte-order flags.
pub const NLA_TYPE_MASK: u16 = 0x3fff;

/// Rounds `len` up to netlink's 4-byte alignment.
#[inline]
pub const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Why a netlink buffer could not be parsed; offsets are into that buffer.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer bytes remain than a netlink message header needs.
    #[error("truncated netlink header at offset {offset} ({len} bytes left)")]
    TruncatedHeader {
        /// Where the header starts.
        offset: usize,
        /// Bytes left in the buffer.
        len: usize,
    },
    /// `nlmsg_len` is smaller than the header or larger than what is left.
    #[error("bad netlink message length {len} at offset {offset} ({avail} bytes left)")]
    BadMessageLength {
        /// Where the message starts.
        offset: usize,
        /// The declared length.
        len: u32,
        /// Bytes left in the buffer.
        avail: usize,
    },
    /// The message is too short for its fixed family header.
    #[error("netlink message at offset {offset} too short for its {need}-byte family header")]
    TruncatedFamilyHeader {
        /// Where the message starts.
        offset: usize,
        /// Bytes the family header needs.
        need: usize,
    },
    /// An attribute's `nla_len` is smaller than its header or overruns the message.
    #[error("bad attribute length {len} at offset {offset} ({avail} bytes left)")]
    BadAttributeLength {
        /// Where the attribute starts.
        offset: usize,
        /// The declared length.
        len: u16,
        /// Bytes left in the message.
        avail: usize,
    },
    /// A fixed-size attribute has fewer payload bytes than its type needs.
    #[error("attribute {kind} at offset {offset} has {len} payload bytes, needs {need}")]
    AttributeTooShort {
        /// The attribute type.
        kind: u16,
        /// Where the attribute starts.
        offset: usize,
        /// Its payload length.
        len: usize,
        /// The payload length its type needs.
        need: usize,
    },
    /// An error message too short for its errno.
    #[error("netlink error message at offset {offset} is truncated")]
    TruncatedError {
        /// Where the message starts.
        offset: usize,
    },
}

/// A checked netlink message header, plus where the message sits in its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NlHeader {
    /// `nlmsg_len`, checked to fit the buffer.
    pub len: u32,
    /// `nlmsg_type`.
    pub kind: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`.
    pub pid: u32,
    /// Offset of the header in the buffer.
    pub offset: usize,
}

impl NlHeader {
    /// Parses and checks the header at `offset`; the message then lies wholly in `buf`.
    pub fn parse(buf: &[u8], offset: usize) -> Result<NlHeader, ParseError> {
        let rest = buf.get(offset..).unwrap_or(&[]);
        let hdr: &[u8; NLMSG_HDRLEN] = rest
            .get(..NLMSG_HDRLEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(ParseError::TruncatedHeader {
                offset,
                len: rest.len(),
            })?;
        let len = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        if (len as usize) < NLMSG_HDRLEN || len as usize > rest.len() {
            return Err(ParseError::BadMessageLength {
                offset,
                len,
                avail: rest.len(),
            });
        }
        Ok(NlHeader {
            len,
            kind: u16::from_ne_bytes([hdr[4], hdr[5]]),
            flags: u16::from_ne_bytes([hdr[6], hdr[7]]),
            seq: u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]),
            pid: u32::from_ne_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]),
            offset,
        })
    }

    /// Offset of the payload (after the header) in the buffer.
    pub fn payload_offset(&self) -> usize {
        self.offset + NLMSG_HDRLEN
    }

    /// Offset one past the message's last byte.
    pub fn end(&self) -> usize {
        self.offset + self.len as usize
    }

    /// Offset of the next message (the length rounded up to alignment).
    pub fn next(&self) -> usize {
        self.offset + align4(self.len as usize)
    }
}

/// The checked headers of the netlink messages in one datagram, in order;
/// see [`headers`].
pub struct Headers<'a> {
    buf: &'a [u8],
    pos: usize,
    stopped: bool,
}

/// Walks the message headers of one datagram. A bad message length yields
/// `Err` and ends the walk, since the next message cannot be found.
pub fn headers(buf: &[u8]) -> Headers<'_> {
    Headers {
        buf,
        pos: 0,
        stopped: false,
    }
}

impl Iterator for Headers<'_> {
    type Item = Result<NlHeader, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped || self.pos >= self.buf.len() {
            return None;
        }
        match NlHeader::parse(self.buf, self.pos) {
            Ok(h) => {
                self.pos = h.next();
                Some(Ok(h))
            }
            Err(e) => {
                self.stopped = true;
                Some(Err(e))
            }
        }
    }
}

/// An `NLMSG_ERROR` message: its errno (positive; 0 acknowledges) and the
/// sequence number of the request it answers.
pub fn parse_nlmsgerr(buf: &[u8], h: &NlHeader) -> Result<(i32, u32), ParseError> {
    let body = buf
        .get(h.payload_offset()..h.end())
        .filter(|b| b.len() >= 4 + NLMSG_HDRLEN)
        .ok_or(ParseError::TruncatedError { offset: h.offset })?;
    let err = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
    let seq = u32::from_ne_bytes([body[12], body[13], body[14], body[15]]);
    Ok((err.unsigned_abs() as i32, seq))
}

/// `struct nfgenmsg`, the family header of every nfnetlink message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NfGenMsg {
    /// `nfgen_family`.
    pub family: u8,
    /// `res_id`, host order (the NFLOG group, the queue number).
    pub res_id: u16,
    /// Offset of the first attribute, right after the family header.
    pub attrs: usize,
}

impl NfGenMsg {
    /// The family header of the message whose checked header is `h`.
    #[inline]
    pub fn parse(buf: &[u8], h: &NlHeader) -> Result<NfGenMsg, ParseError> {
        let start = h.payload_offset();
        let b = buf
            .get(start..start + NFGENMSG_LEN)
            .filter(|_| start + NFGENMSG_LEN <= h.end())
            .ok_or(ParseError::TruncatedFamilyHeader {
                offset: h.offset,
                need: NFGENMSG_LEN,
            })?;
        Ok(NfGenMsg {
            family: b[0],
            res_id: u16::from_be_bytes([b[2], b[3]]),
            attrs: start + NFGENMSG_LEN,
        })
    }
}

/// `struct nfulnl_msg_packet_hw` / `nfqnl_msg_packet_hw`: the hardware
/// source address of a logged or queued packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HwAddr {
    /// The address bytes, at most the declared length of the 8-byte field.
    pub addr: Span,
    /// The declared address length, host order.
    pub addrlen: u16,
}

/// One attribute: its type (flags masked off) and where its payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Attribute type, without `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER`.
    pub kind: u16,
    /// Offset of the attribute header in the buffer.
    pub offset: usize,
    /// Offset of the payload in the buffer.
    pub payload: usize,
    /// Payload length (`nla_len` minus the header; padding excluded).
    pub len: usize,
}

/// Walks the attributes in `buf[start..end]`, checking each length once.
pub struct Attrs<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    failed: bool,
}

impl<'a> Attrs<'a> {
    /// Attributes between `start` and `end` of `buf` (`end` is clamped to `buf`).
    pub fn new(buf: &'a [u8], start: usize, end: usize) -> Self {
        Attrs {
            buf,
            pos: start,
            end: end.min(buf.len()),
            failed: false,
        }
    }
}

impl Iterator for Attrs<'_> {
    type Item = Result<Attr, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Fewer bytes than a header is alignment padding the sender left after
        // its last attribute; the kernel pads, some senders do not.
        if self.failed || self.pos + NLA_HDRLEN > self.end {
            return None;
        }
        let avail = self.end - self.pos;
        let h = self.buf.get(self.pos..self.pos + NLA_HDRLEN)?;
        let len = u16::from_ne_bytes([h[0], h[1]]);
        let kind = u16::from_ne_bytes([h[2], h[3]]) & NLA_TYPE_MASK;
        if (len as usize) < NLA_HDRLEN || len as usize > avail {
            // After a bad length there is no way to find the next attribute.
            self.failed = true;
            return Some(Err(ParseError::BadAttributeLength {
                offset: self.pos,
                len,
                avail,
            }));
        }
        let a = Attr {
            kind,
            offset: self.pos,
            payload: self.pos + NLA_HDRLEN,
            len: len as usize - NLA_HDRLEN,
        };
        self.pos += align4(len as usize);
        Some(Ok(a))
    }
}

impl Attr {
    /// The payload bytes, if at least `need` of them are present.
    #[inline]
    fn fixed<'b>(&self, buf: &'b [u8], need: usize) -> Result<&'b [u8], ParseError> {
        match buf.get(self.payload..self.payload + self.len) {
            Some(p) if p.len() >= need => Ok(p),
            _ => Err(ParseError::AttributeTooShort {
                kind: self.kind,
                offset: self.offset,
                len: self.len,
                need,
            }),
        }
    }

    /// A big-endian u16 payload.
    pub fn be16(&self, buf: &[u8]) -> Result<u16, ParseError> {
        let p = self.fixed(buf, 2)?;
        Ok(u16::from_be_bytes([p[0], p[1]]))
    }

    /// A big-endian u32 payload.
    pub fn be32(&self, buf: &[u8]) -> Result<u32, ParseError> {
        let p = self.fixed(buf, 4)?;
        Ok(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
    }

    /// The first `need` payload bytes, after checking they are present.
    pub fn bytes<'b>(&self, buf: &'b [u8], need: usize) -> Result<&'b [u8], ParseError> {
        self.fixed(buf, need).map(|p| &p[..need])
    }

    /// A big-endian u64 payload.
    pub fn be64(&self, buf: &[u8]) -> Result<u64, ParseError> {
        let p = self.fixed(buf, 8)?;
        Ok(u64::from_be_bytes([
            p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7],
        ]))
    }

    /// The attributes nested in this one.
    pub fn nested<'b>(&self, buf: &'b [u8]) -> Attrs<'b> {
        Attrs::new(buf, self.payload, self.payload + self.len)
    }

    /// The payload as a string: its span, cut at the first NUL.
    pub fn c_str(&self, buf: &[u8]) -> Span {
        let raw = buf
            .get(self.payload..self.payload + self.len)
            .unwrap_or(&[]);
        let n = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        Span::new(self.payload, n)
    }

    /// A packet timestamp (`struct nfulnl_msg_packet_timestamp`, NFQUEUE's
    /// alike): seconds and microseconds, be64 each.
    pub fn timestamp(&self, buf: &[u8]) -> Result<(u64, u64), ParseError> {
        let b = self.bytes(buf, 16)?;
        let mut sec = [0u8; 8];
        let mut usec = [0u8; 8];
        sec.copy_from_slice(&b[..8]);
        usec.copy_from_slice(&b[8..16]);
        Ok((u64::from_be_bytes(sec), u64::from_be_bytes(usec)))
    }

    /// A hardware address attribute: addrlen (be16), pad (2), addr[8].
    pub fn hwaddr(&self, buf: &[u8]) -> Result<HwAddr, ParseError> {
        let b = self.bytes(buf, 12)?;
        let addrlen = u16::from_be_bytes([b[0], b[1]]);
        // Consumers read addrlen bytes, so the span stops there when the
        // kernel says fewer than 8.
        Ok(HwAddr {
            addr: Span::new(self.payload + 4, (addrlen as usize).min(8)),
            addrlen,
        })
    }
}

/// Appends an attribute with `payload` to `out`, padded to alignment.
pub fn put_attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = (NLA_HDRLEN + payload.len()) as u16;
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align4(out.len()), 0);
}

/// Appends a netlink header whose length is patched by [`finish_msg`].
pub fn start_msg(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    start
}

/// Appends a dump request of nfnetlink message type `kind` for every family
/// (nfgenmsg AF_UNSPEC, NFNETLINK_V0, res_id 0).
pub fn dump_msg(out: &mut Vec<u8>, kind: u16, seq: u32) {
    let start = start_msg(out, kind, NLM_F_REQUEST | NLM_F_DUMP, seq);
    out.extend_from_slice(&[0, 0, 0, 0]);
    finish_msg(out, start);
}

/// Writes the final length into the header started at `start`.
pub fn finish_msg(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

#[cfg(test)]
mod tests;
