//! The UNIXSOCK wire format: a stream of self-delimiting messages.
//!
//! Each message is, in network byte order unless noted:
//!
//! ```text
//! u32 marker 0x41C90FD4
//! u16 total_size      bytes after the marker, this field included
//! u32 version:4, reserved:28   (ignored)
//! u16 payload_length
//! payload             the IP packet, padded to a multiple of 8
//! options             each: u32 id, u32 length, value padded to a multiple of 8
//! ```
//!
//! Parsing is split in two so the plugin can hand records a shared buffer:
//! [`Frames`] finds complete messages at the front of a stream buffer
//! checking only their headers, then [`decode`] reads one message's payload
//! and options. Every length is checked before use; nothing here panics or
//! reads outside the message, whatever the bytes.

use rulogd_plugin::Span;
use thiserror::Error;

/// The first four bytes of every message.
pub const MARKER: u32 = 0x41C9_0FD4;
/// Marker, total size, version word and payload length.
pub const HEADER_LEN: usize = 12;
/// The bytes `total_size` always counts: itself, the version word and the
/// payload length.
const FIXED_AFTER_MARKER: u16 = 8;
/// The longest possible message: the marker plus the largest `total_size`.
pub const MAX_FRAME: usize = 4 + u16::MAX as usize;
/// Payloads and option values are padded to this.
const ALIGN: usize = 8;
/// An option's id and length words.
const OPT_HDR: usize = 8;

/// Option ids, ulogd2's `enum ulogd2_option_type`.
pub mod opt {
    /// `oob.prefix` (string).
    pub const PREFIX: u32 = 1;
    /// `oob.in` (string).
    pub const OOB_IN: u32 = 2;
    /// `oob.out` (string).
    pub const OOB_OUT: u32 = 3;
    /// `oob.time.sec` (u32, sender's byte order).
    pub const TIME_SEC: u32 = 4;
    /// `nufw.user.name` (string).
    pub const USER: u32 = 200;
    /// `nufw.user.id` (u32, sender's byte order).
    pub const USER_ID: u32 = 201;
    /// `nufw.os.name` (string).
    pub const OS_NAME: u32 = 202;
    /// `nufw.os.rel` (string).
    pub const OS_REL: u32 = 203;
    /// `nufw.os.vers` (string).
    pub const OS_VERS: u32 = 204;
    /// `nufw.app.name` (string).
    pub const APP_NAME: u32 = 205;
    /// `raw.label` (u8 connection state).
    pub const STATE: u32 = 206;
}

#[inline]
const fn align8(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// Why a message is unacceptable. After any of these the stream cannot be
/// trusted (the next message's start is unknown or the sender is broken).
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream is not at a message start.
    #[error("bad marker 0x{found:08x} (expected 0x{MARKER:08x})")]
    BadMarker {
        /// The four bytes found, read big-endian.
        found: u32,
    },
    /// `total_size` cannot even hold the fixed header fields.
    #[error("total size {total} is smaller than the 8 bytes of header it must count")]
    TotalTooSmall {
        /// The declared total size.
        total: u16,
    },
    /// The payload runs past the end of the message.
    #[error("payload length {payload} exceeds the {room} bytes total size {total} leaves for it")]
    PayloadTooLong {
        /// The declared payload length.
        payload: u16,
        /// The declared total size.
        total: u16,
        /// Bytes left for the payload.
        room: usize,
    },
    /// An option's value runs past the end of the message.
    #[error("option {id} at byte {at} of the message declares {len} bytes, only {left} left")]
    OptionTooLong {
        /// Option id.
        id: u32,
        /// Offset of the option in the message.
        at: usize,
        /// Declared value length.
        len: u32,
        /// Bytes left in the message after the option header.
        left: usize,
    },
}

/// A complete message whose header has been checked; offsets are into the
/// buffer it was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Offset of the marker.
    pub off: usize,
    /// Length of the whole message, marker included.
    pub len: usize,
    /// The 4-bit version field (ulogd ignores it, so does rulogd).
    pub version: u8,
    /// The payload (IP packet).
    pub payload: Span,
}

impl Frame {
    /// Offset one past the message.
    pub fn end(&self) -> usize {
        self.off + self.len
    }
}

/// Checks the message starting at `off`: `Ok(None)` means more bytes are
/// needed. The marker is checked as soon as its four bytes are there, so a
/// stream of garbage is refused without waiting for a "message" to fill.
pub fn parse_frame(buf: &[u8], off: usize) -> Result<Option<Frame>, FrameError> {
    let rest = buf.get(off..).unwrap_or(&[]);
    let Some(m) = rest.get(..4) else {
        return Ok(None);
    };
    let found = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
    if found != MARKER {
        return Err(FrameError::BadMarker { found });
    }
    let Some(h) = rest.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let total = u16::from_be_bytes([h[4], h[5]]);
    if total < FIXED_AFTER_MARKER {
        return Err(FrameError::TotalTooSmall { total });
    }
    let payload = u16::from_be_bytes([h[10], h[11]]);
    let room = (total - FIXED_AFTER_MARKER) as usize;
    if payload as usize > room {
        return Err(FrameError::PayloadTooLong {
            payload,
            total,
            room,
        });
    }
    let len = 4 + total as usize;
    if rest.len() < len {
        return Ok(None);
    }
    Ok(Some(Frame {
        off,
        len,
        version: h[6] >> 4,
        payload: Span::new(off + HEADER_LEN, payload as usize),
    }))
}

/// The complete messages at the front of a stream buffer, in order; see
/// [`frames`]. Stops at the first incomplete message or error.
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

/// Walks the complete messages at the front of `buf`.
pub fn frames(buf: &[u8]) -> Frames<'_> {
    Frames {
        buf,
        pos: 0,
        done: false,
    }
}

impl Frames<'_> {
    /// Bytes taken by the complete messages yielded so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }
}

impl Iterator for Frames<'_> {
    type Item = Result<Frame, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match parse_frame(self.buf, self.pos) {
            Ok(Some(f)) => {
                self.pos = f.end();
                Some(Ok(f))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// The values one message carries. Strings stop at their first NUL (or the
/// end of the option); spans are into the buffer the frame was found in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// `raw.pkt`.
    pub payload: Span,
    /// `oob.family`: 2 for IPv4, 10 for IPv6 (from the packet's version
    /// nibble), else 0.
    pub family: u8,
    /// `oob.prefix`.
    pub prefix: Option<Span>,
    /// `oob.in`.
    pub oob_in: Option<Span>,
    /// `oob.out`.
    pub oob_out: Option<Span>,
    /// `oob.time.sec`.
    pub time_sec: Option<u32>,
    /// `nufw.user.name`.
    pub user_name: Option<Span>,
    /// `nufw.user.id`.
    pub user_id: Option<u32>,
    /// `nufw.os.name`.
    pub os_name: Option<Span>,
    /// `nufw.os.rel`.
    pub os_rel: Option<Span>,
    /// `nufw.os.vers`.
    pub os_vers: Option<Span>,
    /// `nufw.app.name`.
    pub app_name: Option<Span>,
    /// `raw.label`.
    pub label: Option<u8>,
    /// Options with an id ulogd does not know (skipped).
    pub unknown: u32,
    /// The first such id.
    pub first_unknown: Option<u32>,
    /// Integer options whose value is shorter than the integer (skipped).
    pub short: u32,
}

/// Reads the payload and options of a checked frame.
///
/// Options start at the first 8-byte boundary after the payload (counted
/// from the payload's start) and end with the message. Unlike ulogd 2.0.8,
/// a message without options reads nothing past its payload; fewer than 8
/// bytes after the last option are padding and ignored.
pub fn decode(buf: &[u8], f: &Frame) -> Result<Decoded, FrameError> {
    let pl = f.payload;
    let first = buf.get(pl.off as usize).copied().filter(|_| pl.len > 0);
    let family = match first.map(|b| b >> 4) {
        Some(4) => libc::AF_INET as u8,
        Some(6) => libc::AF_INET6 as u8,
        _ => 0,
    };
    let mut d = Decoded {
        payload: pl,
        family,
        ..Decoded::default()
    };
    let end = f.end().min(buf.len());
    let mut pos = pl.off as usize + align8(pl.len as usize);
    while pos + OPT_HDR <= end {
        let h = &buf[pos..pos + OPT_HDR];
        let id = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let val = pos + OPT_HDR;
        let left = end - val;
        if len as usize > left {
            return Err(FrameError::OptionTooLong {
                id,
                at: pos - f.off,
                len,
                left,
            });
        }
        let value = &buf[val..val + len as usize];
        let text = || {
            let n = value.iter().position(|&c| c == 0).unwrap_or(value.len());
            Some(Span::new(val, n))
        };
        // ulogd reads these integers in its own (host) byte order.
        let word = || {
            value
                .get(..4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        match id {
            opt::PREFIX => d.prefix = text(),
            opt::OOB_IN => d.oob_in = text(),
            opt::OOB_OUT => d.oob_out = text(),
            opt::USER => d.user_name = text(),
            opt::OS_NAME => d.os_name = text(),
            opt::OS_REL => d.os_rel = text(),
            opt::OS_VERS => d.os_vers = text(),
            opt::APP_NAME => d.app_name = text(),
            opt::TIME_SEC | opt::USER_ID => match word() {
                Some(v) if id == opt::TIME_SEC => d.time_sec = Some(v),
                Some(v) => d.user_id = Some(v),
                None => d.short += 1,
            },
            opt::STATE => match value.first() {
                Some(&v) => d.label = Some(v),
                None => d.short += 1,
            },
            other => {
                d.unknown += 1;
                d.first_unknown.get_or_insert(other);
            }
        }
        pos = val + align8(len as usize);
    }
    Ok(d)
}

/// Appends one message to `out` (for tests, the fuzz corpus and clients):
/// the payload and each option value are padded to 8 bytes.
///
/// # Panics
/// If the message would not fit the 16-bit total size.
pub fn encode(out: &mut Vec<u8>, payload: &[u8], options: &[(u32, &[u8])]) {
    let start = out.len();
    out.extend_from_slice(&MARKER.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out.resize(start + HEADER_LEN + align8(payload.len()), 0);
    for (id, v) in options {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        let at = out.len();
        out.extend_from_slice(v);
        out.resize(at + align8(v.len()), 0);
    }
    let total = u16::try_from(out.len() - start - 4).expect("message fits a 16-bit size");
    out[start + 4..start + 6].copy_from_slice(&total.to_be_bytes());
}
