//! Packet capture: the pcap and pcapng file formats and the link layers a
//! capture carries (Ethernet with VLAN tags, Linux cooked SLL and SLL2, raw
//! IP), decoded once into offsets so the caller's records point into its
//! own buffer.
//!
//! Everything here reads untrusted bytes: nothing panics on any input (the
//! fuzz target `capture_file` checks), and every error names the byte offset.

pub mod file;
pub mod link;
pub mod live;

pub use file::{FileError, Next, Packet, Parser};
pub use link::{decode, Frame};
pub use live::{Live, LiveConfig, LiveError, LivePacket};
