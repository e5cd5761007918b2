//! ARP over Ethernet for IPv4 (28 bytes).

use crate::{be16, fixed, Result};
use std::net::Ipv4Addr;

/// An ARP packet read with the Ethernet/IPv4 layout, whatever its hardware
/// and protocol types say (as ulogd reads it).
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<'a> {
    h: &'a [u8; 28],
}

impl<'a> ArpPacket<'a> {
    /// Length of the packet.
    pub const LEN: usize = 28;
    /// Offset of the sender hardware address.
    pub const SENDER_HW_OFFSET: usize = 8;
    /// Offset of the target hardware address.
    pub const TARGET_HW_OFFSET: usize = 18;
    /// Length of a hardware address in this layout.
    pub const HW_LEN: usize = 6;

    /// Checks that `buf` holds the whole packet.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        Ok(ArpPacket {
            h: fixed(buf, "ARP")?,
        })
    }

    /// Hardware type.
    #[inline]
    pub fn hw_type(&self) -> u16 {
        be16(self.h, 0)
    }

    /// Protocol type.
    #[inline]
    pub fn proto_type(&self) -> u16 {
        be16(self.h, 2)
    }

    /// Operation.
    #[inline]
    pub fn operation(&self) -> u16 {
        be16(self.h, 6)
    }

    /// Sender hardware address.
    #[inline]
    pub fn sender_hw_addr(&self) -> &'a [u8] {
        &self.h[Self::SENDER_HW_OFFSET..Self::SENDER_HW_OFFSET + Self::HW_LEN]
    }

    /// Sender protocol address.
    #[inline]
    pub fn sender_proto_addr(&self) -> Ipv4Addr {
        let h = self.h;
        Ipv4Addr::new(h[14], h[15], h[16], h[17])
    }

    /// Target hardware address.
    #[inline]
    pub fn target_hw_addr(&self) -> &'a [u8] {
        &self.h[Self::TARGET_HW_OFFSET..Self::TARGET_HW_OFFSET + Self::HW_LEN]
    }

    /// Target protocol address.
    #[inline]
    pub fn target_proto_addr(&self) -> Ipv4Addr {
        let h = self.h;
        Ipv4Addr::new(h[24], h[25], h[26], h[27])
    }
}
