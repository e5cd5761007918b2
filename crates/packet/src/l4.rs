//! Layer-4 headers: TCP (with options), UDP, SCTP, ICMP and ICMPv6, AH,
//! ESP.

use crate::{fixed, Field, Result};
use std::net::Ipv4Addr;

view! {
    /// A TCP header (the 20 fixed bytes; options and payload by data
    /// offset).
    TcpPacket, "TCP", 20, buf;
    /// Source port.
    src_port: u16 = 0;
    /// Destination port.
    dst_port: u16 = 2;
    /// Sequence number.
    seq_number: u32 = 4;
    /// Acknowledgment number.
    ack_number: u32 = 8;
    /// The flags byte: CWR ECE URG ACK PSH RST SYN FIN, high bit first.
    flags: u8 = 13;
    /// Window size.
    window_len: u16 = 14;
    /// Checksum.
    checksum: u16 = 16;
    /// Urgent pointer.
    urgent_at: u16 = 18;
}

impl<'a> TcpPacket<'a> {
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

    /// CWR and ECE as a 2-bit number (CWR high).
    #[inline]
    pub fn ecn_bits(&self) -> u8 {
        self.flags() >> 6
    }

    #[inline]
    fn flag(&self, bit: u8) -> bool {
        self.flags() & bit != 0
    }

    /// URG.
    #[inline]
    pub fn urg(&self) -> bool {
        self.flag(0x20)
    }

    /// ACK.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flag(0x10)
    }

    /// PSH.
    #[inline]
    pub fn psh(&self) -> bool {
        self.flag(0x08)
    }

    /// RST.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flag(0x04)
    }

    /// SYN.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flag(0x02)
    }

    /// FIN.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flag(0x01)
    }

    /// The option bytes the capture holds (empty when the data offset is
    /// 5 or less).
    #[inline]
    pub fn options(&self) -> &'a [u8] {
        let end = self.header_len().min(self.buf.len());
        self.buf.get(Self::LEN..end).unwrap_or(&[])
    }

    /// The payload after the options, or `None` when the data offset is
    /// below 5 or points past the capture.
    #[inline]
    pub fn payload(&self) -> Option<&'a [u8]> {
        let n = self.header_len();
        if n < Self::LEN {
            return None;
        }
        self.buf.get(n..)
    }
}

view! {
    /// A UDP header (8 bytes).
    UdpPacket, "UDP", 8, buf;
    /// Source port.
    src_port: u16 = 0;
    /// Destination port.
    dst_port: u16 = 2;
    /// Length field (header and payload).
    len: u16 = 4;
    /// Checksum.
    checksum: u16 = 6;
}

impl<'a> UdpPacket<'a> {
    /// Whether the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= Self::LEN
    }

    /// The captured bytes after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.buf.get(Self::LEN..).unwrap_or(&[])
    }
}

view! {
    /// The SCTP common header (12 bytes).
    SctpHeader, "SCTP", 12;
    /// Source port.
    src_port: u16 = 0;
    /// Destination port.
    dst_port: u16 = 2;
    /// Verification tag.
    verification_tag: u32 = 4;
    /// Checksum (CRC32c).
    checksum: u32 = 8;
}

view! {
    /// An ICMP or ICMPv6 header (8 bytes, the same layout: type, code,
    /// checksum and the 4 bytes whose meaning depends on the type).
    IcmpPacket, "ICMP", 8;
    /// Message type.
    msg_type: u8 = 0;
    /// Message code.
    code: u8 = 1;
    /// Echo identifier (echo request and reply).
    echo_ident: u16 = 4;
    /// Echo sequence number (echo request and reply).
    echo_seq: u16 = 6;
    /// ICMP: next-hop MTU (destination unreachable, fragmentation needed).
    next_hop_mtu: u16 = 6;
}

impl<'a> IcmpPacket<'a> {
    /// Checks that `buf` holds an ICMPv6 header.
    #[inline]
    pub fn new_checked_v6(buf: &'a [u8]) -> Result<Self> {
        Ok(IcmpPacket {
            h: fixed(buf, "ICMPv6")?,
        })
    }

    /// The checksum's two wire bytes (some consumers read them natively).
    #[inline]
    pub fn checksum_bytes(&self) -> [u8; 2] {
        [self.h[2], self.h[3]]
    }

    /// ICMP: bytes 4..8 as an address, the gateway of a redirect (the
    /// pointer of a parameter problem is its first byte).
    #[inline]
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::at(self.h, 4))
    }
}

view! {
    /// An AH header's fixed part (12 bytes: next header, length, reserved,
    /// SPI, sequence number).
    AhHeader, "AH", 12;
    /// The header after this one.
    next_header: u8 = 0;
    /// Security parameters index.
    spi: u32 = 4;
    /// Sequence number.
    seq_number: u32 = 8;
}

impl AhHeader<'_> {
    /// The whole header's length, `(len + 2) * 4` bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        (usize::from(self.h[1]) + 2) << 2
    }
}

view! {
    /// An ESP header (8 bytes: SPI, sequence number; the rest is
    /// encrypted).
    EspHeader, "ESP", 8;
    /// Security parameters index.
    spi: u32 = 0;
    /// Sequence number.
    seq_number: u32 = 4;
}
