//! BASE: decodes the raw layer-3 packet (IPv4, IPv6, ARP) and its layer-4
//! header into ulogd's `ip.*`, `ip6.*`, `tcp.*`, `udp.*`, `icmp*.*`,
//! `sctp.*`, `ahesp.spi` and `arp.*` keys.
//!
//! The packet may be cut anywhere (NFLOG's copy range), so every header is
//! length-checked as a whole before any of its fields is read, exactly where
//! ulogd checks it (rulogd-packet's views: checked once, then read); a
//! header that is not all there sets none of its keys.

mod ip;
mod keys;
mod l4;
#[cfg(test)]
mod test_packets;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_trunc;

use keys::*;
use rulogd_packet::ArpPacket;
use rulogd_plugin::{Binding, BuildError, Filter, Record, Slot, Span, Value};
use std::sync::Arc;

rulogd_plugin::plugin! {
    Filter "BASE" (default Base): "decodes IPv4/IPv6/ARP and TCP/UDP/ICMP/SCTP/AH/ESP headers of raw.pkt";
    input &INPUT_KEYS;
    output &OUTPUT_KEYS;
}

/// Netfilter protocol families BASE dispatches on (`oob.family`).
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_ARP: u8 = 3;
const NFPROTO_BRIDGE: u8 = 7;
const NFPROTO_IPV6: u8 = 10;

/// Ethertypes (`oob.protocol`, host order) BASE decodes inside bridge packets.
use rulogd_packet::ethertype::{ARP as ETH_P_ARP, IPV4 as ETH_P_IP, IPV6 as ETH_P_IPV6};

/// Decoded values for the current packet, before they go into the record.
///
/// The decoder reads the packet out of the record's buffer, so it cannot write
/// into the same record while it reads; staging the few values it finds in a
/// buffer owned by the filter avoids both a copy of the packet and any
/// per-packet allocation.
pub(crate) struct Stage {
    vals: [Value; N_OUT],
    /// Bit `k`: output `k` was produced for this packet.
    set: u64,
    /// Bit `k`: output `k` is read by something downstream.
    want: u64,
}

// One bit per output key must fit the masks.
const _: () = assert!(N_OUT <= 64);

/// Where the decoder puts each key: a [`Stage`] (fuzzing, tests) or
/// straight into the record ([`Direct`], the per-packet path).
pub(crate) trait Sink {
    /// Records output `k`, unless nothing downstream reads it.
    fn put(&mut self, k: usize, v: Value);
    /// Whether output `k` is wanted (to skip building costly values).
    fn wants(&self, k: usize) -> bool;
}

impl Sink for Stage {
    #[inline]
    fn put(&mut self, k: usize, v: Value) {
        if self.want & (1 << k) != 0 {
            self.vals[k] = v;
            self.set |= 1 << k;
        }
    }

    #[inline]
    fn wants(&self, k: usize) -> bool {
        self.want & (1 << k) != 0
    }
}

/// The record itself, through BASE's bound output slots: a value goes
/// straight into its slot, where a stage cost two more copies of the
/// 48-byte value per key (a fifth of the capture → FLOW path).
struct Direct<'a> {
    rec: &'a mut Record,
    out: &'a [Option<Slot>; N_OUT],
}

impl Sink for Direct<'_> {
    #[inline(always)]
    fn put(&mut self, k: usize, v: Value) {
        self.rec.set_opt(self.out[k], v);
    }

    #[inline(always)]
    fn wants(&self, k: usize) -> bool {
        self.out[k].is_some()
    }
}

impl Stage {
    fn new(want: u64) -> Self {
        Stage {
            vals: std::array::from_fn(|_| Value::None),
            set: 0,
            want,
        }
    }

    /// Takes every produced value in key order, leaving the stage empty.
    fn drain(&mut self, mut f: impl FnMut(usize, Value)) {
        let mut m = std::mem::take(&mut self.set);
        while m != 0 {
            let k = m.trailing_zeros() as usize;
            m &= m - 1;
            f(k, std::mem::take(&mut self.vals[k]));
        }
    }
}

/// The packet being decoded: its captured bytes and where they sit in the
/// record's buffer (for the raw outputs, which point into it).
pub(crate) struct Pkt<'a> {
    /// The captured bytes, cut to `raw.pktlen`.
    pub(crate) data: &'a [u8],
    /// Offset of `data` in the record's buffer, when it lives there.
    span_base: Option<u32>,
}

impl Pkt<'_> {
    /// `len` bytes at `off` of the packet as a raw value, without copying
    /// when the packet is in the record's buffer.
    fn raw(&self, off: usize, len: usize) -> Value {
        match self.span_base {
            Some(b) => Value::Raw(Span::new(b as usize + off, len)),
            None => Value::RawOwned(Arc::from(self.data.get(off..off + len).unwrap_or(&[]))),
        }
    }
}

/// Decodes one packet of `family` (and ethertype `protocol`) into `st`.
pub(crate) fn decode(st: &mut impl Sink, pkt: &Pkt, family: u8, protocol: u16) {
    // ulogd copies oob.protocol even when the input carried no value (it then
    // reads 0), so it is always valid downstream.
    st.put(OOB_PROTOCOL, Value::U16(protocol));
    match family {
        NFPROTO_IPV4 => ip::ipv4(st, pkt.data),
        NFPROTO_IPV6 => ip::ipv6(st, pkt.data),
        NFPROTO_BRIDGE => match protocol {
            ETH_P_IP => ip::ipv4(st, pkt.data),
            ETH_P_IPV6 => ip::ipv6(st, pkt.data),
            ETH_P_ARP => arp(st, pkt),
            _ => {}
        },
        // Native ARP logging, as ulogd master decodes it.
        NFPROTO_ARP => arp(st, pkt),
        _ => {}
    }
}

/// An Ethernet/IPv4 ARP packet (ulogd assumes that layout whatever the
/// hardware type says, and so do we, to produce the same keys).
fn arp(st: &mut impl Sink, pkt: &Pkt) {
    let Ok(a) = ArpPacket::new_checked(pkt.data) else {
        return;
    };
    st.put(ARP_HWTYPE, Value::U16(a.hw_type()));
    st.put(ARP_PROTOCOLTYPE, Value::U16(a.proto_type()));
    st.put(ARP_OPERATION, Value::U16(a.operation()));
    if st.wants(ARP_SHWADDR) {
        st.put(
            ARP_SHWADDR,
            pkt.raw(ArpPacket::SENDER_HW_OFFSET, ArpPacket::HW_LEN),
        );
    }
    st.put(ARP_SADDR, Value::Ipv4(a.sender_proto_addr()));
    if st.wants(ARP_DHWADDR) {
        st.put(
            ARP_DHWADDR,
            pkt.raw(ArpPacket::TARGET_HW_OFFSET, ArpPacket::HW_LEN),
        );
    }
    st.put(ARP_DADDR, Value::Ipv4(a.target_proto_addr()));
}

/// BASE's decoder for another filter of this crate that reads BASE's keys
/// from the packet itself (FLOW, when a BASE right above it would only
/// make them for it): the wanted keys go into a stage and are read back by
/// BASE's key index, with no trip through the record.
pub(crate) struct Decoder {
    stage: Stage,
}

impl Decoder {
    /// BASE's index of the output named `name`.
    pub(crate) fn index(name: &str) -> Option<usize> {
        OUTPUT_KEYS.iter().position(|k| k.name == name)
    }

    /// A decoder making the outputs `wanted` (indices from [`Decoder::index`]).
    pub(crate) fn new(wanted: impl IntoIterator<Item = usize>) -> Decoder {
        let want = wanted.into_iter().fold(0u64, |m, k| m | 1 << k);
        Decoder {
            stage: Stage::new(want),
        }
    }

    /// Decodes the packet as BASE does, from its inputs as BASE reads them.
    pub(crate) fn decode(&mut self, data: &[u8], pktlen: u64, family: u8, protocol: u16) {
        let n = usize::try_from(pktlen).map_or(data.len(), |n| n.min(data.len()));
        let pkt = Pkt {
            data: data.get(..n).unwrap_or(&[]),
            span_base: Some(0),
        };
        self.stage.set = 0;
        decode(&mut self.stage, &pkt, family, protocol);
    }

    /// Output `k` of the last packet, if it was made.
    #[inline]
    pub(crate) fn get(&self, k: usize) -> Option<&Value> {
        (self.stage.set & (1 << k) != 0).then(|| &self.stage.vals[k])
    }
}

/// One BASE instance: its bound slots.
struct Base {
    in_pkt: Option<Slot>,
    in_pktlen: Option<Slot>,
    in_family: Option<Slot>,
    in_protocol: Option<Slot>,
    out: [Option<Slot>; N_OUT],
    /// Nothing below reads an output but maybe `oob.protocol` (FLOW
    /// decodes for itself): no decoding.
    idle: bool,
}

impl Default for Base {
    fn default() -> Self {
        Base {
            in_pkt: None,
            in_pktlen: None,
            in_family: None,
            in_protocol: None,
            out: [None; N_OUT],
            idle: false,
        }
    }
}

impl Filter for Base {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.in_pkt = b.input("raw.pkt");
        self.in_pktlen = b.input("raw.pktlen");
        self.in_family = b.input("oob.family");
        self.in_protocol = b.input("oob.protocol");
        for (k, slot) in self.out.iter_mut().enumerate() {
            *slot = b.output_if_active(k);
        }
        self.idle = self
            .out
            .iter()
            .enumerate()
            .all(|(k, s)| s.is_none() || k == OOB_PROTOCOL);
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> rulogd_plugin::Verdict {
        if self.idle {
            // What decode() would set first, whatever the packet.
            let protocol = rec.get_u64(self.in_protocol).unwrap_or(0) as u16;
            rec.set_opt(self.out[OOB_PROTOCOL], Value::U16(protocol));
            return rulogd_plugin::Verdict::Continue;
        }
        // Like ulogd, an input without a value reads as 0.
        let family = rec.get_u64(self.in_family).unwrap_or(0) as u8;
        let protocol = rec.get_u64(self.in_protocol).unwrap_or(0) as u16;
        let pktlen = rec.get_u64(self.in_pktlen).unwrap_or(0);
        // The packet's bytes are held by a handle of their own (a reference
        // count, not a copy), so the decoder can write into the record
        // while it reads them.
        let (held, span_base) = match rec.get_opt(self.in_pkt) {
            Some(Value::Raw(s) | Value::StrSpan(s)) => {
                (Held::Buf(rec.buf().clone(), *s), Some(s.off))
            }
            Some(Value::RawOwned(a) | Value::Shared(a)) => (Held::Owned(a.clone()), None),
            Some(v) => (Held::Copy(rec.bytes_of(v).unwrap_or(&[]).to_vec()), None),
            None => (Held::Copy(Vec::new()), None),
        };
        let data = held.bytes();
        // ulogd trusts raw.pktlen; we also never read past what was captured.
        let n = usize::try_from(pktlen).map_or(data.len(), |n| n.min(data.len()));
        let pkt = Pkt {
            data: data.get(..n).unwrap_or(&[]),
            span_base,
        };
        let mut sink = Direct {
            rec,
            out: &self.out,
        };
        decode(&mut sink, &pkt, family, protocol);
        rulogd_plugin::Verdict::Continue
    }
}

/// The packet's bytes, held apart from the record.
enum Held {
    /// A span of the record's receive buffer.
    Buf(bytes::Bytes, Span),
    /// A value that owns its bytes.
    Owned(Arc<[u8]>),
    /// A `Str` (no input gives raw.pkt so), copied.
    Copy(Vec<u8>),
}

impl Held {
    fn bytes(&self) -> &[u8] {
        match self {
            Held::Buf(b, s) => {
                let (a, e) = (s.off as usize, s.off as usize + s.len as usize);
                b.get(a..e).unwrap_or(&[])
            }
            Held::Owned(a) => a,
            Held::Copy(v) => v,
        }
    }
}

/// Runs BASE's decoder over `pkt` as if NFLOG had delivered it with
/// `oob.family = family` and `oob.protocol = protocol`, and returns every key
/// it sets, in key order (raw spans are offsets into `pkt`).
///
/// Meant for fuzzing and tests: unlike the plugin's per-packet path it
/// allocates. It panics if a produced raw value points outside `pkt`, so a
/// fuzzer reports such a bug as a crash.
pub fn decode_for_fuzz(family: u8, protocol: u16, pkt: &[u8]) -> Vec<(&'static str, Value)> {
    let mut st = Stage::new(u64::MAX);
    let p = Pkt {
        data: pkt,
        span_base: Some(0),
    };
    decode(&mut st, &p, family, protocol);
    let mut out = Vec::new();
    st.drain(|k, v| {
        if let Value::Raw(s) = v {
            assert!(
                (s.off as usize + s.len as usize) <= pkt.len(),
                "raw output outside the packet"
            );
        }
        out.push((keys::name_of(k), v));
    });
    out
}

/// Splits a fuzzer input into (family, protocol, packet) and decodes it with
/// [`decode_for_fuzz`].
///
/// Byte 0 picks the family: 2, 10, 7 and 3 are taken as they are, any other
/// value as one of them (`byte % 4`). For bridge packets the ethertype
/// follows from the IP version nibble of the packet (4, 6, otherwise ARP).
pub fn fuzz_input(data: &[u8]) -> Vec<(&'static str, Value)> {
    let Some((&sel, pkt)) = data.split_first() else {
        return Vec::new();
    };
    let family = match sel {
        NFPROTO_IPV4 | NFPROTO_IPV6 | NFPROTO_BRIDGE | NFPROTO_ARP => sel,
        _ => [NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_BRIDGE, NFPROTO_ARP][usize::from(sel % 4)],
    };
    let protocol = match family {
        NFPROTO_IPV4 => ETH_P_IP,
        NFPROTO_IPV6 => ETH_P_IPV6,
        NFPROTO_ARP => ETH_P_ARP,
        _ => match pkt.first().map(|b| b >> 4) {
            Some(4) => ETH_P_IP,
            Some(6) => ETH_P_IPV6,
            _ => ETH_P_ARP,
        },
    };
    decode_for_fuzz(family, protocol, pkt)
}
