//! IP2BIN: writes each address key as the text `0x` + 32 hex digits of its
//! 16-byte IPv6 form (IPv4 mapped to `::ffff:a.b.c.d`), ulogd's RAWSTR that
//! its SQL layer splices unquoted into a MySQL `BINARY(16)` column.
//!
//! ulogd 2.0.8 stops its loop one key early and never produces
//! `reply.ip.daddr.bin`; rulogd produces all six (as 2.0.9 does).

use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Filter, InlineStr, KeyDef, KeyType, Record, Slot, Value, Verdict,
};

/// The address keys converted, in ulogd's order; output `i` is `<name i>.bin`.
pub(crate) const ADDR_KEYS: [&str; 6] = [
    "ip.saddr",
    "ip.daddr",
    "orig.ip.saddr",
    "orig.ip.daddr",
    "reply.ip.saddr",
    "reply.ip.daddr",
];

pub(crate) static INPUT_KEYS: [KeyDef; 8] = [
    KeyDef::new("oob.family", KeyType::U8),
    KeyDef::new("oob.protocol", KeyType::U16),
    KeyDef::new("ip.saddr", KeyType::IpAddr).optional(),
    KeyDef::new("ip.daddr", KeyType::IpAddr).optional(),
    KeyDef::new("orig.ip.saddr", KeyType::IpAddr).optional(),
    KeyDef::new("orig.ip.daddr", KeyType::IpAddr).optional(),
    KeyDef::new("reply.ip.saddr", KeyType::IpAddr).optional(),
    KeyDef::new("reply.ip.daddr", KeyType::IpAddr).optional(),
];

static OUTPUT_KEYS: [KeyDef; 6] = [
    KeyDef::new("ip.saddr.bin", KeyType::RawStr),
    KeyDef::new("ip.daddr.bin", KeyType::RawStr),
    KeyDef::new("orig.ip.saddr.bin", KeyType::RawStr),
    KeyDef::new("orig.ip.daddr.bin", KeyType::RawStr),
    KeyDef::new("reply.ip.saddr.bin", KeyType::RawStr),
    KeyDef::new("reply.ip.daddr.bin", KeyType::RawStr),
];

rulogd_plugin::plugin! {
    Filter "IP2BIN" (build): "converts IP address keys to 0x-prefixed 128-bit hex text (SQL BINARY(16))";
    input &INPUT_KEYS;
    output &OUTPUT_KEYS;
}

fn build(_ctx: &BuildCtx) -> Result<Box<dyn Filter>, BuildError> {
    Ok(Box::new(Ip2Bin::default()))
}

/// Which width of the address value a record's family says to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Width {
    V4,
    V6,
}

/// The address width for this record, from `oob.family` or, for bridge
/// packets, from the ethertype in `oob.protocol`. `None` where ulogd logs an
/// unknown family and fails the event. Native ARP (family 3, ulogd master)
/// carries IPv4 addresses, as IP2STR treats it.
pub(crate) fn width(rec: &Record, family: Option<Slot>, protocol: Option<Slot>) -> Option<Width> {
    match rec.get_u64(family).unwrap_or(0) as u8 {
        2 | 3 => Some(Width::V4),
        10 => Some(Width::V6),
        7 => match rec.get_u64(protocol)? as u16 {
            0x86dd => Some(Width::V6),
            0x0800 | 0x0806 => Some(Width::V4),
            _ => None,
        },
        _ => None,
    }
}

/// The 16 bytes ulogd's value union holds for an address key: IPv4 in the
/// first four (the family, not the value, decides how many are read).
pub(crate) fn octets(v: &Value) -> Option<[u8; 16]> {
    match v {
        Value::Ipv4(a) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a.octets());
            Some(o)
        }
        Value::Ipv6(a) => Some(a.octets()),
        _ => None,
    }
}

/// `0x` and 32 lowercase hex digits (34 bytes; fits an [`InlineStr`]).
fn hex128(a: &[u8; 16]) -> InlineStr {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 34];
    buf[0] = b'0';
    buf[1] = b'x';
    for (i, &b) in a.iter().enumerate() {
        buf[2 + 2 * i] = HEX[usize::from(b >> 4)];
        buf[3 + 2 * i] = HEX[usize::from(b & 0xf)];
    }
    InlineStr::from_bytes(&buf).unwrap_or_default()
}

/// The slots an address converter (IP2BIN, IP2HBIN) reads and writes:
/// output `i` is address key `i` converted.
#[derive(Default)]
pub(crate) struct AddrSlots {
    pub(crate) family: Option<Slot>,
    pub(crate) protocol: Option<Slot>,
    pub(crate) inputs: [Option<Slot>; 6],
    pub(crate) outputs: [Option<Slot>; 6],
}

impl AddrSlots {
    /// Binds [`INPUT_KEYS`] and the six outputs.
    pub(crate) fn bind(b: &Binding) -> Self {
        let mut s = AddrSlots {
            family: b.input("oob.family"),
            protocol: b.input("oob.protocol"),
            ..AddrSlots::default()
        };
        for (i, name) in ADDR_KEYS.iter().enumerate() {
            s.inputs[i] = b.input(name);
            s.outputs[i] = b.output_if_active(i);
        }
        s
    }
}

#[derive(Default)]
struct Ip2Bin(AddrSlots);

impl Filter for Ip2Bin {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.0 = AddrSlots::bind(b);
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        // As in ulogd, the family is looked at only for a valid address, so
        // a record without addresses passes whatever its family.
        let s = &self.0;
        let mut w = None;
        for (&input, &output) in s.inputs.iter().zip(&s.outputs) {
            let Some(addr) = rec.get_opt(input).and_then(octets) else {
                continue;
            };
            let width = match w {
                Some(x) => x,
                None => match width(rec, s.family, s.protocol) {
                    Some(x) => *w.insert(x),
                    None => return Verdict::Drop,
                },
            };
            let Some(out) = output else { continue };
            let v6 = match width {
                Width::V6 => addr,
                Width::V4 => {
                    let mut m = [0u8; 16];
                    m[10] = 0xff;
                    m[11] = 0xff;
                    m[12..].copy_from_slice(&addr[..4]);
                    m
                }
            };
            rec.set(out, Value::Str(hex128(&v6)));
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Harness;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn harness(family: Option<u8>, protocol: Option<u16>) -> Harness {
        Harness::with_family(REGISTRATION, family, protocol)
    }

    #[test]
    fn ipv4_is_mapped_into_ipv6_hex() {
        let mut h = harness(Some(2), None);
        h.set("ip.saddr", Value::Ipv4(Ipv4Addr::new(192, 0, 2, 1)));
        h.set("ip.daddr", Value::Ipv4(Ipv4Addr::new(10, 255, 0, 7)));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(
            h.out_text("ip.saddr.bin"),
            "0x00000000000000000000ffffc0000201"
        );
        assert_eq!(
            h.out_text("ip.daddr.bin"),
            "0x00000000000000000000ffff0aff0007"
        );
        assert_eq!(h.valid_outputs(), ["ip.saddr.bin", "ip.daddr.bin"]);
        h.assert_gap_untouched();
    }

    #[test]
    fn ipv6_is_written_whole() {
        let mut h = harness(Some(10), None);
        let a: Ipv6Addr = "2001:db8::ff:1".parse().expect("addr");
        h.set("orig.ip.saddr", Value::Ipv6(a));
        h.run();
        assert_eq!(
            h.out_text("orig.ip.saddr.bin"),
            "0x20010db8000000000000000000ff0001"
        );
    }

    #[test]
    fn all_six_keys_are_produced_including_the_last() {
        // ulogd 2.0.8 never sets reply.ip.daddr.bin (loop off by one).
        let mut h = harness(Some(2), None);
        for (i, k) in ADDR_KEYS.iter().enumerate() {
            h.set(k, Value::Ipv4(Ipv4Addr::new(10, 0, 0, i as u8)));
        }
        h.run();
        assert_eq!(h.valid_outputs().len(), 6);
        assert_eq!(
            h.out_text("reply.ip.daddr.bin"),
            "0x00000000000000000000ffff0a000005"
        );
    }

    #[test]
    fn bridge_family_comes_from_the_ethertype() {
        let mut h = harness(Some(7), Some(0x86dd));
        h.set("ip.saddr", Value::Ipv6("::1".parse().expect("addr")));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(
            h.out_text("ip.saddr.bin"),
            "0x00000000000000000000000000000001"
        );
        let mut h = harness(Some(7), Some(0x0806));
        h.set("ip.saddr", Value::Ipv4(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(
            h.out_text("ip.saddr.bin"),
            "0x00000000000000000000ffff01020304"
        );
    }

    #[test]
    fn unknown_family_fails_only_with_an_address() {
        for (fam, proto) in [
            (Some(0), None),
            (None, None),
            (Some(7), None),
            (Some(7), Some(0x8100)),
        ] {
            let mut h = harness(fam, proto);
            assert_eq!(h.run(), Verdict::Continue);
            h.set("ip.daddr", Value::Ipv4(Ipv4Addr::new(1, 2, 3, 4)));
            assert_eq!(h.run(), Verdict::Drop, "{fam:?} {proto:?}");
        }
    }

    #[test]
    fn family_decides_the_width_read() {
        let mut h = harness(Some(2), None);
        h.set("ip.saddr", Value::Ipv6("102:304::".parse().expect("addr")));
        h.run();
        assert_eq!(
            h.out_text("ip.saddr.bin"),
            "0x00000000000000000000ffff01020304"
        );
    }

    #[test]
    fn declares_ulogd_keys() {
        let names: Vec<_> = INFO.output_keys.iter().map(|k| &*k.name).collect();
        assert_eq!(
            names,
            [
                "ip.saddr.bin",
                "ip.daddr.bin",
                "orig.ip.saddr.bin",
                "orig.ip.daddr.bin",
                "reply.ip.saddr.bin",
                "reply.ip.daddr.bin"
            ]
        );
        assert!(INFO.output_keys.iter().all(|k| k.ty == KeyType::RawStr));
    }
}
