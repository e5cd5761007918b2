//! RFC 7011 IPFIX messages: the templates rulogd exports and the data
//! records of one flow, packed into messages no longer than the MTU.
//!
//! Records are fixed-length (no variable-length elements), so a data set's
//! record count follows from its length: the writer thread uses that to
//! number messages (the sequence number counts data records sent before the
//! message), which keeps the numbering right however many stacks share one
//! instance.

use std::net::IpAddr;

/// IPFIX version number in the message header.
pub const VERSION: u16 = 10;
/// Message header length.
pub const HEADER_LEN: usize = 16;
/// Set header length.
const SET_HEADER_LEN: usize = 4;
/// Set id of a template set.
const TEMPLATE_SET: u16 = 2;
/// RFC 5103's enterprise number for reverse information elements.
pub const REVERSE_PEN: u32 = 29305;

/// Template ids: IPv4 and IPv6, each as a biflow (RFC 5103) or one direction.
pub const TID_V4_BIFLOW: u16 = 256;
/// IPv6 biflow template.
pub const TID_V6_BIFLOW: u16 = 257;
/// IPv4 one-direction template.
pub const TID_V4_UNI: u16 = 258;
/// IPv6 one-direction template.
pub const TID_V6_UNI: u16 = 259;

/// One field specifier: IE id, length, enterprise number (0: IETF).
type Field = (u16, u16, u32);

/// The fields every template starts with, after the two addresses.
const COMMON: [Field; 7] = [
    (7, 2, 0),   // sourceTransportPort
    (11, 2, 0),  // destinationTransportPort
    (4, 1, 0),   // protocolIdentifier
    (1, 8, 0),   // octetDeltaCount
    (2, 8, 0),   // packetDeltaCount
    (152, 8, 0), // flowStartMilliseconds
    (153, 8, 0), // flowEndMilliseconds
];
/// The reply direction of a biflow.
const REVERSE: [Field; 2] = [(1, 8, REVERSE_PEN), (2, 8, REVERSE_PEN)];

/// The fields of template `tid`, in record order.
fn fields(tid: u16) -> Vec<Field> {
    let v6 = matches!(tid, TID_V6_BIFLOW | TID_V6_UNI);
    let mut f = if v6 {
        // sourceIPv6Address, destinationIPv6Address
        vec![(27, 16, 0), (28, 16, 0)]
    } else {
        // sourceIPv4Address, destinationIPv4Address
        vec![(8, 4, 0), (12, 4, 0)]
    };
    f.extend_from_slice(&COMMON);
    // icmpTypeCodeIPv4 / icmpTypeCodeIPv6: type * 256 + code.
    f.push((if v6 { 139 } else { 32 }, 2, 0));
    // flowId: conntrack's id, so a collector can tie records together.
    f.push((148, 8, 0));
    if matches!(tid, TID_V4_BIFLOW | TID_V6_BIFLOW) {
        f.extend_from_slice(&REVERSE);
    }
    f
}

/// Length of one data record of template `tid`; `None` for an unknown id.
pub fn record_len(tid: u16) -> Option<usize> {
    matches!(tid, TID_V4_BIFLOW..=TID_V6_UNI)
        .then(|| fields(tid).iter().map(|f| f.1 as usize).sum())
}

/// The template ids a mode exports.
pub fn templates(biflow: bool) -> [u16; 2] {
    if biflow {
        [TID_V4_BIFLOW, TID_V6_BIFLOW]
    } else {
        [TID_V4_UNI, TID_V6_UNI]
    }
}

/// A template set holding the templates `tids`.
pub fn template_set(tids: &[u16]) -> Vec<u8> {
    let mut s = vec![0u8; SET_HEADER_LEN];
    for &tid in tids {
        let f = fields(tid);
        s.extend_from_slice(&tid.to_be_bytes());
        s.extend_from_slice(&(f.len() as u16).to_be_bytes());
        for (id, len, pen) in f {
            if pen == 0 {
                s.extend_from_slice(&id.to_be_bytes());
                s.extend_from_slice(&len.to_be_bytes());
            } else {
                s.extend_from_slice(&(id | 0x8000).to_be_bytes());
                s.extend_from_slice(&len.to_be_bytes());
                s.extend_from_slice(&pen.to_be_bytes());
            }
        }
    }
    let len = s.len() as u16;
    s[0..2].copy_from_slice(&TEMPLATE_SET.to_be_bytes());
    s[2..4].copy_from_slice(&len.to_be_bytes());
    s
}

/// Writes a message header at the start of `msg` (whose length is final).
pub fn put_header(msg: &mut [u8], export_time: u32, seq: u32, domain: u32) {
    let len = msg.len() as u16;
    msg[0..2].copy_from_slice(&VERSION.to_be_bytes());
    msg[2..4].copy_from_slice(&len.to_be_bytes());
    msg[4..8].copy_from_slice(&export_time.to_be_bytes());
    msg[8..12].copy_from_slice(&seq.to_be_bytes());
    msg[12..16].copy_from_slice(&domain.to_be_bytes());
}

/// Sets the export time and sequence number of a finished message.
pub fn restamp(msg: &mut [u8], export_time: u32, seq: u32) {
    msg[4..8].copy_from_slice(&export_time.to_be_bytes());
    msg[8..12].copy_from_slice(&seq.to_be_bytes());
}

/// Data records in a message of ours (templates and unknown sets count 0).
pub fn data_records(msg: &[u8]) -> u32 {
    let end = msg
        .get(2..4)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .min(msg.len());
    let mut off = HEADER_LEN;
    let mut n = 0u32;
    while off + SET_HEADER_LEN <= end {
        let id = u16::from_be_bytes([msg[off], msg[off + 1]]);
        let len = u16::from_be_bytes([msg[off + 2], msg[off + 3]]) as usize;
        if len < SET_HEADER_LEN {
            break;
        }
        if let Some(r) = record_len(id) {
            n += ((len - SET_HEADER_LEN) / r) as u32;
        }
        off += len;
    }
    n
}

/// One direction's (or a biflow's) facts, as the encoder takes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flow {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 when the protocol has none).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
    /// Bytes and packets in this direction.
    pub bytes: u64,
    /// Packets in this direction.
    pub pkts: u64,
    /// Bytes and packets the other way (biflow records only).
    pub rev_bytes: u64,
    /// Packets the other way.
    pub rev_pkts: u64,
    /// Start and end, milliseconds since the epoch.
    pub start_ms: u64,
    /// End, milliseconds since the epoch.
    pub end_ms: u64,
    /// ICMP type * 256 + code (0 for other protocols).
    pub icmp: u16,
    /// flowId (conntrack's `ct.id`; 0 when unknown).
    pub id: u64,
}

/// Appends the data record for `f` in template `tid`'s layout; the address
/// family must match the template's.
pub fn put_record(out: &mut Vec<u8>, tid: u16, f: &Flow) {
    match (f.src, f.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&f.sport.to_be_bytes());
    out.extend_from_slice(&f.dport.to_be_bytes());
    out.push(f.proto);
    out.extend_from_slice(&f.bytes.to_be_bytes());
    out.extend_from_slice(&f.pkts.to_be_bytes());
    out.extend_from_slice(&f.start_ms.to_be_bytes());
    out.extend_from_slice(&f.end_ms.to_be_bytes());
    out.extend_from_slice(&f.icmp.to_be_bytes());
    out.extend_from_slice(&f.id.to_be_bytes());
    if matches!(tid, TID_V4_BIFLOW | TID_V6_BIFLOW) {
        out.extend_from_slice(&f.rev_bytes.to_be_bytes());
        out.extend_from_slice(&f.rev_pkts.to_be_bytes());
    }
}

fn v6(a: IpAddr) -> std::net::Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// The template for a record of `f`'s family in the given mode.
pub fn template_for(f: &Flow, biflow: bool) -> u16 {
    let v4 = f.src.is_ipv4() && f.dst.is_ipv4();
    match (v4, biflow) {
        (true, true) => TID_V4_BIFLOW,
        (false, true) => TID_V6_BIFLOW,
        (true, false) => TID_V4_UNI,
        (false, false) => TID_V6_UNI,
    }
}

/// Packs data records into messages of at most `mtu` bytes.
#[derive(Debug)]
pub struct MessageBuilder {
    mtu: usize,
    domain: u32,
    msg: Vec<u8>,
    /// Where the open data set starts, and its template.
    set: Option<(usize, u16)>,
    records: usize,
}

impl MessageBuilder {
    /// A builder for observation domain `domain`.
    pub fn new(mtu: usize, domain: u32) -> Self {
        MessageBuilder {
            mtu,
            domain,
            msg: Vec::with_capacity(mtu),
            set: None,
            records: 0,
        }
    }

    /// Adds a record of template `tid`; when it does not fit, the message
    /// so far is finished first and handed to `done`.
    pub fn push(&mut self, tid: u16, f: &Flow, done: &mut impl FnMut(&[u8])) {
        let rlen = record_len(tid).unwrap_or(0);
        let same_set = matches!(self.set, Some((_, t)) if t == tid);
        let need = rlen + if same_set { 0 } else { SET_HEADER_LEN };
        if self.records > 0 && self.msg.len() + need > self.mtu {
            self.finish(done);
        }
        if self.msg.is_empty() {
            self.msg.resize(HEADER_LEN, 0);
        }
        if !matches!(self.set, Some((_, t)) if t == tid) {
            self.close_set();
            self.set = Some((self.msg.len(), tid));
            self.msg.extend_from_slice(&tid.to_be_bytes());
            self.msg.extend_from_slice(&[0, 0]);
        }
        put_record(&mut self.msg, tid, f);
        self.records += 1;
    }

    fn close_set(&mut self) {
        if let Some((at, _)) = self.set.take() {
            let len = (self.msg.len() - at) as u16;
            self.msg[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    /// Finishes the message being filled, if it holds a record; its export
    /// time and sequence number are set when it is sent.
    pub fn finish(&mut self, done: &mut impl FnMut(&[u8])) {
        if self.records == 0 {
            return;
        }
        self.close_set();
        put_header(&mut self.msg, 0, 0, self.domain);
        done(&self.msg);
        self.msg.clear();
        self.records = 0;
    }
}

#[cfg(test)]
mod tests;
