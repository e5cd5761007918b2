//! IP2BIN: writes each address key as the text `0x` + 32 hex digits of its
//! 16-byte IPv6 form (IPv4 mapped to `::ffff:a.b.c.d`), ulogd's RAWSTR that
//! its SQL layer splices unquoted into a MySQL `BINARY(16)` column.
//!
//! ulogd 2.0.8 stops its loop one key early and never produces
//! `reply.ip.daddr.bin`; rulogd produces all six (as 2.0.9 does).

use crate::addr::{AddrSlots, FamilyCheck, Width, IP_INPUT_KEYS, IP_KEYS};
use rulogd_plugin::{
    Binding, BuildError, Filter, InlineStr, KeyDef, KeyType, Record, Value, Verdict,
};

static OUTPUT_KEYS: [KeyDef; 6] = [
    KeyDef::new("ip.saddr.bin", KeyType::RawStr),
    KeyDef::new("ip.daddr.bin", KeyType::RawStr),
    KeyDef::new("orig.ip.saddr.bin", KeyType::RawStr),
    KeyDef::new("orig.ip.daddr.bin", KeyType::RawStr),
    KeyDef::new("reply.ip.saddr.bin", KeyType::RawStr),
    KeyDef::new("reply.ip.daddr.bin", KeyType::RawStr),
];

rulogd_plugin::plugin! {
    Filter "IP2BIN" (default Ip2Bin): "converts IP address keys to 0x-prefixed 128-bit hex text (SQL BINARY(16))";
    input &IP_INPUT_KEYS;
    output &OUTPUT_KEYS;
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

#[derive(Default)]
struct Ip2Bin(AddrSlots<6>);

impl Filter for Ip2Bin {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.0 = AddrSlots::bind(b, &IP_KEYS);
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        self.0.convert(rec, FamilyCheck::AtFirstAddress, |w, a| {
            let v6 = match w {
                Width::V6 => *a,
                Width::V4 => {
                    let mut m = [0u8; 16];
                    m[10] = 0xff;
                    m[11] = 0xff;
                    m[12..].copy_from_slice(&a[..4]);
                    m
                }
            };
            Value::Str(hex128(&v6))
        })
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
        for (i, k) in IP_KEYS.iter().enumerate() {
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
