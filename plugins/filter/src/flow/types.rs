//! The flow table's inputs and outputs: packets in, reports out.

/// Microseconds since the Unix epoch, from the packets' own timestamps.
pub type Usec = u64;

/// TCP flag bits as on the wire.
pub mod tcp {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
}

/// A flow's key: both endpoints in canonical order, so the two directions
/// of one conversation find the same entry.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct FlowKey {
    /// AF_INET or AF_INET6.
    pub family: u8,
    /// IP protocol.
    pub proto: u8,
    /// The lower endpoint's address (IPv4 in the first 4 bytes).
    pub a: [u8; 16],
    /// The higher endpoint's address.
    pub b: [u8; 16],
    /// The lower endpoint's port (ICMP echo: the identifier).
    pub pa: u16,
    /// The higher endpoint's port.
    pub pb: u16,
    /// The outermost VLAN id (0: untagged, or a priority tag only).
    pub vlan: u16,
}

/// One packet as the table sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Packet {
    /// AF_INET or AF_INET6.
    pub family: u8,
    /// IP protocol.
    pub proto: u8,
    /// Source address (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port (0 without one).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// The outermost VLAN id, 0 for none.
    pub vlan: u16,
    /// IP total length.
    pub bytes: u64,
    /// TCP flags (0 for other protocols).
    pub flags: u8,
    /// ICMP or ICMPv6 type and code.
    pub icmp: Option<(u8, u8)>,
    /// Capture time.
    pub time: Usec,
}

/// One direction's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dir {
    /// Packets.
    pub pkts: u64,
    /// Bytes (IP total length).
    pub bytes: u64,
    /// OR of TCP flags.
    pub flags: u8,
}

/// What kind of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The flow's first packet (with `start_records`).
    Start,
    /// The active timeout: counters since the previous record.
    Update,
    /// The flow ended.
    End,
}

/// Why a record was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A start record.
    New,
    /// No packet for the class's idle timeout.
    Idle,
    /// The active timeout (update records).
    Active,
    /// FIN seen from both sides, then the linger.
    Fin,
    /// RST seen, then the linger.
    Rst,
    /// The table was full; least recently active flow ended.
    Evicted,
    /// Shutdown, end of the capture file.
    Forced,
}

impl Reason {
    /// The word in `flow.end_reason`.
    pub fn word(self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::Idle => "idle",
            Reason::Active => "active",
            Reason::Fin => "fin",
            Reason::Rst => "rst",
            Reason::Evicted => "evicted",
            Reason::Forced => "forced",
        }
    }
}

/// A record ready for output: counters are deltas since the flow's
/// previous record.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// The flow's key.
    pub key: FlowKey,
    /// Whether endpoint `a` of the key initiated.
    pub init_is_a: bool,
    /// Whether the initiator was guessed (the first packet was no SYN).
    pub guessed: bool,
    /// Flow id, unique per table.
    pub id: u64,
    /// Record number within the flow, from 1.
    pub seq: u32,
    /// The flow's first packet.
    pub start: Usec,
    /// The flow's last packet so far.
    pub end: Usec,
    /// Initiator → responder.
    pub orig: Dir,
    /// Responder → initiator.
    pub reply: Dir,
    /// ICMP type and code of the first ICMP packet.
    pub icmp: Option<(u8, u8)>,
    /// Update or end.
    pub kind: Kind,
    /// Why.
    pub reason: Reason,
}

/// Timeouts in microseconds (0: the active timeout is off).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Idle TCP.
    pub tcp: Usec,
    /// Idle UDP.
    pub udp: Usec,
    /// Idle ICMP and ICMPv6.
    pub icmp: Usec,
    /// Idle, any other protocol.
    pub other: Usec,
    /// After RST, or FIN from both sides.
    pub linger: Usec,
    /// Interval of update records; 0 disables them.
    pub active: Usec,
    /// Longest life of one flow entry; the next packet starts a new one.
    /// 0: none.
    pub max_life: Usec,
}

/// Emergency mode: when the table fills to `enter_at` flows, the idle
/// timeouts become `to`'s (Suricata's pattern), so idle flows make room
/// before busy ones are evicted; at `leave_at` flows or fewer the normal
/// timeouts return.
#[derive(Clone, Copy, Debug)]
pub struct Emergency {
    /// The idle timeouts and the linger in emergency (active and max_life
    /// are not used from here).
    pub to: Timeouts,
    /// Flows tracked at which emergency begins.
    pub enter_at: usize,
    /// Flows tracked at which it ends.
    pub leave_at: usize,
}
