//! IPv4 and IPv6 headers, and the IPv6 extension headers.

use crate::{be16, be32, fixed, Result};
use std::net::{Ipv4Addr, Ipv6Addr};

/// An IPv4 header (the 20 fixed bytes; options and payload by `ihl`).
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<'a> {
    h: &'a [u8; 20],
    buf: &'a [u8],
}

impl<'a> Ipv4Packet<'a> {
    /// Length of the fixed header.
    pub const MIN_LEN: usize = 20;

    /// Checks that `buf` holds the fixed header.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        Ok(Ipv4Packet {
            h: fixed(buf, "IPv4")?,
            buf,
        })
    }

    /// The version nibble (4 for a well-formed packet; not checked).
    #[inline]
    pub fn version(&self) -> u8 {
        self.h[0] >> 4
    }

    /// The header length field, in 32-bit words (not checked against 5).
    #[inline]
    pub fn ihl(&self) -> u8 {
        self.h[0] & 0x0f
    }

    /// The header length in bytes, `ihl * 4`, whatever `ihl` says.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.ihl()) * 4
    }

    /// Type of service (DSCP and ECN).
    #[inline]
    pub fn tos(&self) -> u8 {
        self.h[1]
    }

    /// Total length field.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.h, 2)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.h, 4)
    }

    /// The whole 16-bit flags and fragment offset field.
    #[inline]
    pub fn frag_field(&self) -> u16 {
        be16(self.h, 6)
    }

    /// The fragment offset, in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.frag_field() & 0x1fff
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.h[8]
    }

    /// The protocol of the next header.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.h[9]
    }

    /// Header checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.h, 10)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let h = self.h;
        Ipv4Addr::new(h[12], h[13], h[14], h[15])
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let h = self.h;
        Ipv4Addr::new(h[16], h[17], h[18], h[19])
    }

    /// The captured bytes from `header_len()` on (the next header), or
    /// `None` when the capture ends before that. A short `ihl` is taken as
    /// it is, so the payload then overlaps the fixed header.
    #[inline]
    pub fn payload(&self) -> Option<&'a [u8]> {
        self.buf.get(self.header_len()..)
    }

    /// [`payload`](Self::payload) cut to the total length, which bounds the
    /// datagram when the frame carried padding after it.
    #[inline]
    pub fn payload_in_total_len(&self) -> Option<&'a [u8]> {
        let end = usize::from(self.total_len()).min(self.buf.len());
        self.buf.get(self.header_len()..end)
    }
}

/// An IPv6 header (the 40 fixed bytes).
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<'a> {
    h: &'a [u8; 40],
    buf: &'a [u8],
}

impl<'a> Ipv6Packet<'a> {
    /// Length of the fixed header.
    pub const LEN: usize = 40;

    /// Checks that `buf` holds the fixed header.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        Ok(Ipv6Packet {
            h: fixed(buf, "IPv6")?,
            buf,
        })
    }

    /// The version nibble (6 for a well-formed packet; not checked).
    #[inline]
    pub fn version(&self) -> u8 {
        self.h[0] >> 4
    }

    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        ((be32(self.h, 0) >> 20) & 0xff) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        be32(self.h, 0) & 0x000f_ffff
    }

    /// Payload length field (what follows the fixed header).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(self.h, 4)
    }

    /// The first next-header value.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.h[6]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.h[7]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        let a: [u8; 16] = std::array::from_fn(|i| self.h[8 + i]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        let a: [u8; 16] = std::array::from_fn(|i| self.h[24 + i]);
        Ipv6Addr::from(a)
    }

    /// The captured bytes after the fixed header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[Self::LEN..]
    }
}

/// The two bytes every IPv6 extension header starts with: next header and
/// length. What the length counts depends on the header.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6ExtHeader<'a> {
    h: &'a [u8; 2],
    buf: &'a [u8],
}

impl<'a> Ipv6ExtHeader<'a> {
    /// Checks that `buf` holds the next-header and length bytes.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        Ok(Ipv6ExtHeader {
            h: fixed(buf, "IPv6 extension")?,
            buf,
        })
    }

    /// The header after this one.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.h[0]
    }

    /// The raw length byte.
    #[inline]
    pub fn len_field(&self) -> u8 {
        self.h[1]
    }

    /// The length of a hop-by-hop, routing or destination options header:
    /// `(len + 1) * 8` bytes.
    #[inline]
    pub fn options_len(&self) -> usize {
        (usize::from(self.len_field()) + 1) << 3
    }

    /// The length of an AH header: `(len + 2) * 4` bytes.
    #[inline]
    pub fn ah_len(&self) -> usize {
        (usize::from(self.len_field()) + 2) << 2
    }

    /// How many bytes were captured from this header on.
    #[inline]
    pub fn captured(&self) -> usize {
        self.buf.len()
    }
}

/// An IPv6 fragment header (8 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Ipv6FragHeader<'a> {
    h: &'a [u8; 8],
}

impl<'a> Ipv6FragHeader<'a> {
    /// Length of the header.
    pub const LEN: usize = 8;

    /// Checks that `buf` holds the whole header.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        Ok(Ipv6FragHeader {
            h: fixed(buf, "IPv6 fragment")?,
        })
    }

    /// The header after this one.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.h[0]
    }

    /// The fragment offset in bytes (the 13-bit field times 8).
    #[inline]
    pub fn frag_offset_bytes(&self) -> u16 {
        be16(self.h, 2) & 0xfff8
    }

    /// The more-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.h[3] & 1 != 0
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u32 {
        be32(self.h, 4)
    }
}
