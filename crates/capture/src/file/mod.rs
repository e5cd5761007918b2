//! pcap (microsecond and nanosecond, either byte order) and pcapng (any
//! number of sections and interfaces, any `if_tsresol`) parsed from a
//! caller's buffer.
//!
//! The parser never copies packet bytes: it returns offsets into the slice
//! it was given, so a reader can fill one large buffer from the file, hand
//! out records that point into it and carry only a partial last record over
//! to the next buffer.

use thiserror::Error;

/// The largest record accepted: far above any snap length, small enough that
/// a corrupt length cannot make the reader allocate gigabytes.
pub const MAX_RECORD: usize = 16 << 20;

/// Why a capture file cannot be read; every variant names the byte offset.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FileError {
    /// The first bytes are neither pcap nor pcapng.
    #[error("not a pcap or pcapng file: magic {found:#010x} at byte 0")]
    Magic {
        /// The first four bytes, big-endian.
        found: u32,
    },
    /// The file ends inside a header or a record.
    #[error("truncated at byte {offset}: {what} needs {need} bytes, {have} left")]
    Truncated {
        /// Where the incomplete header or record starts.
        offset: u64,
        /// What was being read.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes the file still had.
        have: usize,
    },
    /// A header field is impossible.
    #[error("corrupt capture at byte {offset}: {what}")]
    Corrupt {
        /// Where the bad header starts.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

/// One packet: where its bytes are in the buffer and what the file says of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Offset of the captured bytes in the buffer given to [`Parser::next`].
    pub data_off: usize,
    /// Captured length.
    pub caplen: u32,
    /// Length on the wire.
    pub origlen: u32,
    /// Seconds since the epoch.
    pub sec: u64,
    /// Nanoseconds within the second.
    pub nsec: u32,
    /// The link type (LINKTYPE_* value).
    pub linktype: u16,
    /// The pcapng interface number, `None` for pcap.
    pub interface: Option<u32>,
}

/// What the next bytes hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// A packet; `consumed` bytes of the buffer are used.
    Packet {
        /// The packet.
        pkt: Packet,
        /// Bytes to advance.
        consumed: usize,
    },
    /// A block without a packet (pcapng statistics, names, a new section).
    Skip {
        /// Bytes to advance.
        consumed: usize,
    },
    /// The record is not complete: at least `need` bytes are required.
    NeedMore {
        /// Bytes the complete header or record takes.
        need: usize,
    },
}

/// One pcapng interface: its link type and time resolution.
#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: u16,
    /// Timestamp units per second.
    units: u64,
}

#[derive(Clone, Debug)]
enum Format {
    Pcap {
        big: bool,
        nanos: bool,
        linktype: u16,
    },
    Pcapng {
        big: bool,
        interfaces: Vec<Interface>,
        /// Snap length of interface 0, for simple packet blocks.
        snaplen0: u32,
    },
}

/// The fields of a pcapng packet block, whichever kind it is.
struct PacketBlock {
    iface: u32,
    ts: u64,
    caplen: u32,
    origlen: u32,
    /// Offset of the packet bytes from the block's start.
    data_off: usize,
    /// Bytes the block has for them.
    room: usize,
}

/// A capture file's parser: the format learnt from its header and the
/// offset of the next record.
#[derive(Clone, Debug)]
pub struct Parser {
    format: Format,
    offset: u64,
}

const PCAP_US: u32 = 0xa1b2_c3d4;
const PCAP_NS: u32 = 0xa1b2_3c4d;
const SHB: u32 = 0x0a0d_0d0a;
const BYTE_ORDER: u32 = 0x1a2b_3c4d;

fn u16_at(b: &[u8], at: usize, big: bool) -> u16 {
    let v = [b[at], b[at + 1]];
    if big {
        u16::from_be_bytes(v)
    } else {
        u16::from_le_bytes(v)
    }
}

fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    }
}

impl Parser {
    /// Reads the file header at the start of `buf`: the parser and the bytes
    /// it took, or `Ok(None)` when `buf` is too short to tell.
    pub fn start(buf: &[u8]) -> Result<Option<(Parser, usize)>, FileError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let be = u32_at(buf, 0, true);
        let le = u32_at(buf, 0, false);
        let pcap = |big: bool, nanos: bool| -> Result<Option<(Parser, usize)>, FileError> {
            if buf.len() < 24 {
                return Ok(None);
            }
            let major = u16_at(buf, 4, big);
            if major != 2 {
                return Err(FileError::Corrupt {
                    offset: 4,
                    what: format!("pcap version {major}, expected 2"),
                });
            }
            // The top bits of the link type field carry FCS information.
            let linktype = (u32_at(buf, 20, big) & 0xffff) as u16;
            let format = Format::Pcap {
                big,
                nanos,
                linktype,
            };
            Ok(Some((Parser { format, offset: 24 }, 24)))
        };
        match (be, le) {
            (PCAP_US, _) => pcap(true, false),
            (_, PCAP_US) => pcap(false, false),
            (PCAP_NS, _) => pcap(true, true),
            (_, PCAP_NS) => pcap(false, true),
            (SHB, _) => {
                let mut p = Parser {
                    format: Format::Pcapng {
                        big: false,
                        interfaces: Vec::new(),
                        snaplen0: 0,
                    },
                    offset: 0,
                };
                match p.next(buf)? {
                    Next::Skip { consumed } => Ok(Some((p, consumed))),
                    Next::NeedMore { .. } => Ok(None),
                    Next::Packet { .. } => unreachable!("a section header is not a packet"),
                }
            }
            _ => Err(FileError::Magic { found: be }),
        }
    }

    /// The file offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The error for a file that ends with `left` bytes of an incomplete
    /// record, or `Ok` when it ends on a record boundary.
    pub fn finish(&self, left: usize, need: usize) -> Result<(), FileError> {
        if left == 0 {
            return Ok(());
        }
        Err(FileError::Truncated {
            offset: self.offset,
            what: self.record_name(),
            need,
            have: left,
        })
    }

    fn record_name(&self) -> &'static str {
        match self.format {
            Format::Pcap { .. } => "a pcap record",
            Format::Pcapng { .. } => "a pcapng block",
        }
    }

    fn corrupt(&self, what: String) -> FileError {
        FileError::Corrupt {
            offset: self.offset,
            what,
        }
    }

    /// Parses the record at the start of `buf`.
    pub fn next(&mut self, buf: &[u8]) -> Result<Next, FileError> {
        let n = match &self.format {
            Format::Pcap {
                big,
                nanos,
                linktype,
            } => self.pcap_record(buf, *big, *nanos, *linktype)?,
            Format::Pcapng { .. } => self.pcapng_block(buf)?,
        };
        match n {
            Next::Packet { consumed, .. } | Next::Skip { consumed } => {
                self.offset += consumed as u64
            }
            Next::NeedMore { .. } => {}
        }
        Ok(n)
    }

    fn pcap_record(
        &self,
        buf: &[u8],
        big: bool,
        nanos: bool,
        linktype: u16,
    ) -> Result<Next, FileError> {
        if buf.len() < 16 {
            return Ok(Next::NeedMore { need: 16 });
        }
        let sec = u32_at(buf, 0, big);
        let frac = u32_at(buf, 4, big);
        let caplen = u32_at(buf, 8, big);
        let origlen = u32_at(buf, 12, big);
        let limit = if nanos { 1_000_000_000 } else { 1_000_000 };
        if frac >= limit {
            return Err(self.corrupt(format!("timestamp fraction {frac} out of range")));
        }
        if caplen as usize > MAX_RECORD {
            return Err(self.corrupt(format!("captured length {caplen} larger than {MAX_RECORD}")));
        }
        let need = 16 + caplen as usize;
        if buf.len() < need {
            return Ok(Next::NeedMore { need });
        }
        let pkt = Packet {
            data_off: 16,
            caplen,
            origlen: origlen.max(caplen),
            sec: u64::from(sec),
            nsec: if nanos { frac } else { frac * 1000 },
            linktype,
            interface: None,
        };
        Ok(Next::Packet {
            pkt,
            consumed: need,
        })
    }

    fn pcapng_block(&mut self, buf: &[u8]) -> Result<Next, FileError> {
        if buf.len() < 12 {
            return Ok(Next::NeedMore { need: 12 });
        }
        // A section header sets the byte order for itself and what follows.
        if u32_at(buf, 0, true) == SHB {
            let big = match (u32_at(buf, 8, true), u32_at(buf, 8, false)) {
                (BYTE_ORDER, _) => true,
                (_, BYTE_ORDER) => false,
                (m, _) => return Err(self.corrupt(format!("section byte-order magic {m:#010x}"))),
            };
            if let Format::Pcapng {
                big: b, interfaces, ..
            } = &mut self.format
            {
                *b = big;
                interfaces.clear();
            }
        }
        let Format::Pcapng { big, .. } = self.format else {
            unreachable!("pcapng_block on a pcap file")
        };
        let btype = u32_at(buf, 0, big);
        let total = u32_at(buf, 4, big) as usize;
        if total < 12 || !total.is_multiple_of(4) {
            return Err(self.corrupt(format!("block length {total}")));
        }
        if total > MAX_RECORD {
            return Err(self.corrupt(format!("block length {total} larger than {MAX_RECORD}")));
        }
        if buf.len() < total {
            return Ok(Next::NeedMore { need: total });
        }
        if u32_at(buf, total - 4, big) as usize != total {
            return Err(self.corrupt("block lengths at its start and end differ".into()));
        }
        let body = &buf[8..total - 4];
        match btype {
            1 => self.interface(body, big)?,
            6 => return self.timed_packet(body, big, total, true),
            3 => return self.simple_packet(body, big, total),
            2 => return self.timed_packet(body, big, total, false),
            _ => {}
        }
        Ok(Next::Skip { consumed: total })
    }

    /// An interface description block: link type, snap length, `if_tsresol`.
    fn interface(&mut self, body: &[u8], big: bool) -> Result<(), FileError> {
        if body.len() < 8 {
            return Err(self.corrupt("interface block too short".into()));
        }
        let linktype = u16_at(body, 0, big);
        let snaplen = u32_at(body, 4, big);
        let mut units = 1_000_000u64;
        let mut opts = &body[8..];
        while opts.len() >= 4 {
            let code = u16_at(opts, 0, big);
            let len = u16_at(opts, 2, big) as usize;
            let padded = (len + 3) & !3;
            if code == 0 {
                break;
            }
            if opts.len() < 4 + padded {
                return Err(self.corrupt(format!("interface option {code} runs past its block")));
            }
            if code == 9 && len >= 1 {
                let r = opts[4];
                units = if r & 0x80 != 0 {
                    let p = u32::from(r & 0x7f);
                    if p > 63 {
                        return Err(self.corrupt(format!("if_tsresol 2^-{p}")));
                    }
                    1u64 << p
                } else {
                    10u64
                        .checked_pow(u32::from(r))
                        .ok_or_else(|| self.corrupt(format!("if_tsresol 10^-{r}")))?
                };
            }
            opts = &opts[4 + padded..];
        }
        if let Format::Pcapng {
            interfaces,
            snaplen0,
            ..
        } = &mut self.format
        {
            if interfaces.is_empty() {
                *snaplen0 = snaplen;
            }
            if interfaces.len() >= 65_536 {
                return Err(FileError::Corrupt {
                    offset: self.offset,
                    what: "more than 65536 interfaces".into(),
                });
            }
            interfaces.push(Interface { linktype, units });
        }
        Ok(())
    }

    fn iface(&self, id: u32) -> Result<Interface, FileError> {
        match &self.format {
            Format::Pcapng { interfaces, .. } => {
                interfaces.get(id as usize).copied().ok_or_else(|| {
                    self.corrupt(format!(
                        "packet of interface {id}, which no block described"
                    ))
                })
            }
            Format::Pcap { .. } => unreachable!("pcapng interface in a pcap file"),
        }
    }

    fn packet(&self, b: PacketBlock, total: usize) -> Result<Next, FileError> {
        let PacketBlock {
            iface,
            ts,
            caplen,
            origlen,
            data_off,
            room,
        } = b;
        let i = self.iface(iface)?;
        if caplen as usize > room {
            return Err(self.corrupt(format!("captured length {caplen} runs past its block")));
        }
        let sec = ts / i.units;
        let nsec = ((u128::from(ts % i.units) * 1_000_000_000) / u128::from(i.units)) as u32;
        Ok(Next::Packet {
            pkt: Packet {
                data_off,
                caplen,
                origlen: origlen.max(caplen),
                sec,
                nsec,
                linktype: i.linktype,
                interface: Some(iface),
            },
            consumed: total,
        })
    }

    /// An enhanced packet block, or the obsolete packet block (`wide_id`
    /// false: a 16-bit interface id and a 16-bit drop count in its place).
    fn timed_packet(
        &self,
        body: &[u8],
        big: bool,
        total: usize,
        wide_id: bool,
    ) -> Result<Next, FileError> {
        if body.len() < 20 {
            return Err(self.corrupt("packet block too short".into()));
        }
        let iface = if wide_id {
            u32_at(body, 0, big)
        } else {
            u32::from(u16_at(body, 0, big))
        };
        let b = PacketBlock {
            iface,
            ts: (u64::from(u32_at(body, 4, big)) << 32) | u64::from(u32_at(body, 8, big)),
            caplen: u32_at(body, 12, big),
            origlen: u32_at(body, 16, big),
            data_off: 28,
            room: body.len() - 20,
        };
        self.packet(b, total)
    }

    /// A simple packet block: no timestamp (0), interface 0.
    fn simple_packet(&self, body: &[u8], big: bool, total: usize) -> Result<Next, FileError> {
        if body.len() < 4 {
            return Err(self.corrupt("simple packet block too short".into()));
        }
        let origlen = u32_at(body, 0, big);
        let snap = match self.format {
            Format::Pcapng { snaplen0, .. } if snaplen0 != 0 => snaplen0,
            _ => u32::MAX,
        };
        let caplen = origlen.min(snap).min((body.len() - 4) as u32);
        let b = PacketBlock {
            iface: 0,
            ts: 0,
            caplen,
            origlen,
            data_off: 12,
            room: body.len() - 4,
        };
        self.packet(b, total)
    }
}

/// Every packet of a whole file held in memory (tests and the fuzz target;
/// the CAPTURE input reads in chunks). Offsets are from the start of `buf`.
pub fn parse_all(buf: &[u8]) -> Result<Vec<Packet>, FileError> {
    let Some((mut p, mut at)) = Parser::start(buf)? else {
        return Err(FileError::Truncated {
            offset: 0,
            what: "the file header",
            need: 24,
            have: buf.len(),
        });
    };
    let mut out = Vec::new();
    while at < buf.len() {
        match p.next(&buf[at..])? {
            Next::Packet { mut pkt, consumed } => {
                pkt.data_off += at;
                out.push(pkt);
                at += consumed;
            }
            Next::Skip { consumed } => at += consumed,
            Next::NeedMore { need } => {
                p.finish(buf.len() - at, need)?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
