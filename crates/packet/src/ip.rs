//! IPv4 and IPv6 headers, and the IPv6 extension headers.

use crate::Field;
use std::net::{Ipv4Addr, Ipv6Addr};

view! {
    /// An IPv4 header (the 20 fixed bytes; options and payload by `ihl`).
    Ipv4Packet, "IPv4", 20, buf;
    /// Type of service (DSCP and ECN).
    tos: u8 = 1;
    /// Total length field.
    total_len: u16 = 2;
    /// Identification.
    ident: u16 = 4;
    /// The whole 16-bit flags and fragment offset field.
    frag_field: u16 = 6;
    /// Time to live.
    ttl: u8 = 8;
    /// The protocol of the next header.
    protocol: u8 = 9;
    /// Header checksum.
    checksum: u16 = 10;
}

impl<'a> Ipv4Packet<'a> {
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

    /// The fragment offset, in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.frag_field() & 0x1fff
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::at(self.h, 12))
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::at(self.h, 16))
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

view! {
    /// An IPv6 header (the 40 fixed bytes).
    Ipv6Packet, "IPv6", 40, buf;
    /// Payload length field (what follows the fixed header).
    payload_len: u16 = 4;
    /// The first next-header value.
    next_header: u8 = 6;
    /// Hop limit.
    hop_limit: u8 = 7;
}

impl<'a> Ipv6Packet<'a> {
    /// The version nibble (6 for a well-formed packet; not checked).
    #[inline]
    pub fn version(&self) -> u8 {
        self.h[0] >> 4
    }

    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        ((u32::at(self.h, 0) >> 20) & 0xff) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        u32::at(self.h, 0) & 0x000f_ffff
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
        self.buf.get(Self::LEN..).unwrap_or(&[])
    }
}

view! {
    /// The two bytes every IPv6 extension header starts with: next header
    /// and length. What the length counts depends on the header.
    Ipv6ExtHeader, "IPv6 extension", 2, buf;
    /// The header after this one.
    next_header: u8 = 0;
    /// The raw length byte.
    len_field: u8 = 1;
}

impl Ipv6ExtHeader<'_> {
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

view! {
    /// An IPv6 fragment header (8 bytes).
    Ipv6FragHeader, "IPv6 fragment", 8;
    /// The header after this one.
    next_header: u8 = 0;
    /// Identification.
    ident: u32 = 4;
}

impl Ipv6FragHeader<'_> {
    /// The fragment offset in bytes (the 13-bit field times 8).
    #[inline]
    pub fn frag_offset_bytes(&self) -> u16 {
        u16::at(self.h, 2) & 0xfff8
    }

    /// The more-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.h[3] & 1 != 0
    }
}
