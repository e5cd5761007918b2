//! Packet header views (IPv4, IPv6 and its extension headers, TCP, UDP,
//! SCTP, ICMP and ICMPv6, AH, ESP, ARP) in the style of smoltcp's: `Header::new_checked`
//! checks once that the buffer holds the whole fixed header and keeps it as
//! a fixed-size array, so every accessor after that reads a field at a
//! constant index the compiler has already proved in range (no bounds check
//! and no panic at run time). Variable parts (options, payloads) come back
//! as slices clamped to what was captured.
//!
//! The views decode the wire format only. What a consumer makes of an
//! inconsistent header (ulogd's readings of a short `ihl`, a bogus ESP
//! "length" and the like) stays with the consumer, so the views never
//! second-guess a field.

/// Declares a header view: the struct over the fixed header (kept as an
/// array) and, with `buf`, over the whole buffer for the variable parts;
/// `LEN`; `new_checked`; and one accessor per big-endian field at a
/// constant offset.
macro_rules! view {
    (
        $(#[$m:meta])*
        $name:ident, $label:literal, $len:literal $(, $buf:ident)?;
        $($(#[$fm:meta])* $field:ident: $ty:ty = $at:literal;)*
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a> {
            h: &'a [u8; $len],
            $($buf: &'a [u8],)?
        }

        impl<'a> $name<'a> {
            /// Length of the fixed header.
            pub const LEN: usize = $len;

            /// Checks that `buf` holds the fixed header.
            #[inline]
            pub fn new_checked(buf: &'a [u8]) -> $crate::Result<Self> {
                Ok($name {
                    h: $crate::fixed(buf, $label)?,
                    $($buf: buf,)?
                })
            }

            $(
                $(#[$fm])*
                #[inline]
                pub fn $field(&self) -> $ty {
                    <$ty as $crate::Field>::at(self.h, $at)
                }
            )*
        }
    };
}

mod arp;
mod ip;
mod l4;

pub use arp::ArpPacket;
pub use ip::{Ipv4Packet, Ipv6ExtHeader, Ipv6FragHeader, Ipv6Packet};
pub use l4::{AhHeader, EspHeader, IcmpPacket, SctpHeader, TcpPacket, UdpPacket};

/// A buffer too short for the header asked of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{header} header needs {need} bytes, {got} captured")]
pub struct Truncated {
    /// Which header (`"IPv4"`, `"TCP"`, ...).
    pub header: &'static str,
    /// Bytes the fixed header takes.
    pub need: usize,
    /// Bytes there were.
    pub got: usize,
}

/// What `new_checked` returns.
pub type Result<T> = std::result::Result<T, Truncated>;

/// The first `N` bytes of `buf` as an array, or why not.
#[inline]
fn fixed<'a, const N: usize>(buf: &'a [u8], header: &'static str) -> Result<&'a [u8; N]> {
    buf.first_chunk::<N>().ok_or(Truncated {
        header,
        need: N,
        got: buf.len(),
    })
}

/// A field type read big-endian from a fixed header. `at` is a constant
/// at every call, so after inlining the compiler proves it in range.
trait Field {
    fn at<const N: usize>(h: &[u8; N], at: usize) -> Self;
}

impl Field for u8 {
    #[inline(always)]
    fn at<const N: usize>(h: &[u8; N], at: usize) -> u8 {
        h[at]
    }
}

impl Field for u16 {
    #[inline(always)]
    fn at<const N: usize>(h: &[u8; N], at: usize) -> u16 {
        u16::from_be_bytes([h[at], h[at + 1]])
    }
}

impl Field for u32 {
    #[inline(always)]
    fn at<const N: usize>(h: &[u8; N], at: usize) -> u32 {
        u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
    }
}

/// IP protocol numbers (IPv4 `protocol`, IPv6 `next header`).
pub mod ip_proto {
    /// IPv6 hop-by-hop options.
    pub const HOPOPTS: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating security payload.
    pub const ESP: u8 = 50;
    /// Authentication header.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const NONE: u8 = 59;
    /// IPv6 destination options.
    pub const DSTOPTS: u8 = 60;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// Ethertypes.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// ICMP message types and the one code the decoders look at.
pub mod icmp {
    /// Echo reply.
    pub const ECHOREPLY: u8 = 0;
    /// Destination unreachable.
    pub const DEST_UNREACH: u8 = 3;
    /// Code of DEST_UNREACH: fragmentation needed (the MTU is set).
    pub const FRAG_NEEDED: u8 = 4;
    /// Redirect (the gateway is set).
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO: u8 = 8;
    /// Parameter problem (the pointer is set).
    pub const PARAMETERPROB: u8 = 12;
}

/// ICMPv6 message types the decoders look at.
pub mod icmpv6 {
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
}

/// ARP operations.
pub mod arp_op {
    /// Request.
    pub const REQUEST: u16 = 1;
    /// Reply.
    pub const REPLY: u16 = 2;
    /// NAK (RFC 1577).
    pub const NAK: u16 = 10;
}

#[cfg(test)]
mod tests;
