//! ARP over Ethernet for IPv4 (28 bytes).

use crate::Field;
use std::net::Ipv4Addr;

view! {
    /// An ARP packet read with the Ethernet/IPv4 layout, whatever its
    /// hardware and protocol types say (as ulogd reads it).
    ArpPacket, "ARP", 28;
    /// Hardware type.
    hw_type: u16 = 0;
    /// Protocol type.
    proto_type: u16 = 2;
    /// Operation.
    operation: u16 = 6;
}

impl<'a> ArpPacket<'a> {
    /// Offset of the sender hardware address.
    pub const SENDER_HW_OFFSET: usize = 8;
    /// Offset of the target hardware address.
    pub const TARGET_HW_OFFSET: usize = 18;
    /// Length of a hardware address in this layout.
    pub const HW_LEN: usize = 6;

    /// Sender hardware address.
    #[inline]
    pub fn sender_hw_addr(&self) -> &'a [u8] {
        &self.h[Self::SENDER_HW_OFFSET..Self::SENDER_HW_OFFSET + Self::HW_LEN]
    }

    /// Sender protocol address.
    #[inline]
    pub fn sender_proto_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::at(self.h, 14))
    }

    /// Target hardware address.
    #[inline]
    pub fn target_hw_addr(&self) -> &'a [u8] {
        &self.h[Self::TARGET_HW_OFFSET..Self::TARGET_HW_OFFSET + Self::HW_LEN]
    }

    /// Target protocol address.
    #[inline]
    pub fn target_proto_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::at(self.h, 24))
    }
}
