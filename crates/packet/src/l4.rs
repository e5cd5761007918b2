//! Layer-4 headers: TCP (with options), UDP, SCTP, ICMP, ICMPv6, AH, ESP.

use crate::{be16, be32, fixed, Result};
use std::net::Ipv4Addr;

/// A TCP header (the 20 fixed bytes; options and payload by data offset).
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<'a> {
    h: &'a [u8; 20],
    buf: &'a [u8],
}

impl<'a> TcpPacket<'a> {
    /// Length of the fixed header.
    pub const MIN_LEN: usize = 20;

    /// Checks that `buf` holds the fixed header.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        Ok(TcpPacket {
            h: fixed(buf, "TCP")?,
            buf,
        })
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.h, 0)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.h, 2)
    }

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(self.h, 4)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32(self.h, 8)
    }

    /// Data offset, in 32-bit words (not checked against 5).
    #[inline]
    pub fn data_offset(&self) -> u8 {
        self.h[12] >> 4
    }

    /// The header length in bytes, `data_offset * 4`.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset()) * 4
    }

    /// The 4 reserved bits after the data offset.
    #[inline]
    pub fn reserved(&self) -> u8 {
        self.h[12] & 0x0f
    }

    /// The flags byte: CWR ECE URG ACK PSH RST SYN FIN, high bit first.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.h[13]
    }

    /// CWR and ECE as a 2-bit number (CWR high).
    #[inline]
    pub fn ecn_bits(&self) -> u8 {
        self.flags() >> 6
    }

    /// URG.
    #[inline]
    pub fn urg(&self) -> bool {
        self.flags() & 0x20 != 0
    }

    /// ACK.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & 0x10 != 0
    }

    /// PSH.
    #[inline]
    pub fn psh(&self) -> bool {
        self.flags() & 0x08 != 0
    }

    /// RST.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & 0x04 != 0
    }

    /// SYN.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & 0x02 != 0
    }

    /// FIN.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & 0x01 != 0
    }

    /// Window size.
    #[inline]
    pub fn window_len(&self) -> u16 {
        be16(self.h, 14)
    }

    /// Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.h, 16)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        be16(self.h, 18)
    }

    /// The option bytes the capture holds (empty when the data offset is
    /// 5 or less).
    #[inline]
    pub fn options(&self) -> &'a [u8] {
        let end = self.header_len().min(self.buf.len());
        self.buf.get(Self::MIN_LEN..end).unwrap_or(&[])
    }

    /// The payload after the options, or `None` when the data offset is
    /// below 5 or points past the capture.
    #[inline]
    pub fn payload(&self) -> Option<&'a [u8]> {
        let n = self.header_len();
        if n < Self::MIN_LEN {
            return None;
        }
        self.buf.get(n..)
    }
}

/// A UDP header (8 bytes).
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<'a> {
    h: &'a [u8; 8],
    buf: &'a [u8],
}

impl<'a> UdpPacket<'a> {
    /// Length of the header.
    pub const LEN: usize = 8;

    /// Checks that `buf` holds the header.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        Ok(UdpPacket {
            h: fixed(buf, "UDP")?,
            buf,
        })
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.h, 0)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.h, 2)
    }

    /// Length field (header and payload).
    #[inline]
    pub fn len(&self) -> u16 {
        be16(self.h, 4)
    }

    /// Whether the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= Self::LEN
    }

    /// Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.h, 6)
    }

    /// The captured bytes after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.buf.get(Self::LEN..).unwrap_or(&[])
    }
}

/// The SCTP common header (12 bytes).
#[derive(Debug, Clone, Copy)]
pub struct SctpHeader<'a> {
    h: &'a [u8; 12],
}

impl<'a> SctpHeader<'a> {
    /// Length of the header.
    pub const LEN: usize = 12;

    /// Checks that `buf` holds the header.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        Ok(SctpHeader {
            h: fixed(buf, "SCTP")?,
        })
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.h, 0)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.h, 2)
    }

    /// Verification tag.
    #[inline]
    pub fn verification_tag(&self) -> u32 {
        be32(self.h, 4)
    }

    /// Checksum (CRC32c).
    #[inline]
    pub fn checksum(&self) -> u32 {
        be32(self.h, 8)
    }
}

/// An ICMP or ICMPv6 header (8 bytes, the same layout: type, code,
/// checksum and the 4 bytes whose meaning depends on the type).
#[derive(Debug, Clone, Copy)]
pub struct IcmpPacket<'a> {
    h: &'a [u8; 8],
}

impl<'a> IcmpPacket<'a> {
    /// Length of the header.
    pub const LEN: usize = 8;

    /// Checks that `buf` holds an ICMP header.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        Ok(IcmpPacket {
            h: fixed(buf, "ICMP")?,
        })
    }

    /// Checks that `buf` holds an ICMPv6 header.
    #[inline]
    pub fn new_checked_v6(buf: &'a [u8]) -> Result<Self> {
        Ok(IcmpPacket {
            h: fixed(buf, "ICMPv6")?,
        })
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.h[0]
    }

    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.h[1]
    }

    /// The checksum's two wire bytes (some consumers read them natively).
    #[inline]
    pub fn checksum_bytes(&self) -> [u8; 2] {
        [self.h[2], self.h[3]]
    }

    /// Echo identifier (echo request and reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.h, 4)
    }

    /// Echo sequence number (echo request and reply).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        be16(self.h, 6)
    }

    /// ICMP: bytes 4..8 as an address, the gateway of a redirect (the pointer of
    /// a parameter problem is its first byte).
    #[inline]
    pub fn gateway(&self) -> Ipv4Addr {
        let h = self.h;
        Ipv4Addr::new(h[4], h[5], h[6], h[7])
    }

    /// ICMP: next-hop MTU (destination unreachable, fragmentation needed).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.h, 6)
    }
}

/// An AH header's fixed part (12 bytes: next header, length, reserved,
/// SPI, sequence number).
#[derive(Debug, Clone, Copy)]
pub struct AhHeader<'a> {
    h: &'a [u8; 12],
}

impl<'a> AhHeader<'a> {
    /// Length of the fixed part.
    pub const LEN: usize = 12;

    /// Checks that `buf` holds the fixed part.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        Ok(AhHeader {
            h: fixed(buf, "AH")?,
        })
    }

    /// The header after this one.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.h[0]
    }

    /// The whole header's length, `(len + 2) * 4` bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        (usize::from(self.h[1]) + 2) << 2
    }

    /// Security parameters index.
    #[inline]
    pub fn spi(&self) -> u32 {
        be32(self.h, 4)
    }

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(self.h, 8)
    }
}

/// An ESP header (8 bytes: SPI, sequence number; the rest is encrypted).
#[derive(Debug, Clone, Copy)]
pub struct EspHeader<'a> {
    h: &'a [u8; 8],
}

impl<'a> EspHeader<'a> {
    /// Length of the header.
    pub const LEN: usize = 8;

    /// Checks that `buf` holds the header.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        Ok(EspHeader {
            h: fixed(buf, "ESP")?,
        })
    }

    /// Security parameters index.
    #[inline]
    pub fn spi(&self) -> u32 {
        be32(self.h, 0)
    }

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(self.h, 4)
    }
}
