//! IP2HBIN: turns each address key into a number for integer SQL columns:
//! an IPv4 address becomes its host-order u32 (192.0.2.1 is 3221225985), an
//! IPv6 address stays 128 bits (ulogd 2.0.9's u128; 2.0.8 stored a pointer).
//!
//! Unlike IP2BIN and IP2STR, ulogd checks the family before looking at the
//! addresses, so an unknown family fails the event even without addresses.
//! ulogd 2.0.8 never produces `reply.ip.hdaddr` (its loop stops one key
//! early); rulogd produces all six, as 2.0.9 does.

use crate::addr::{AddrSlots, FamilyCheck, Width, IP_INPUT_KEYS, IP_KEYS};
use rulogd_plugin::{Binding, BuildError, Filter, KeyDef, KeyType, Record, Value, Verdict};
use std::net::Ipv6Addr;

static OUTPUT_KEYS: [KeyDef; 6] = [
    KeyDef::new("ip.hsaddr", KeyType::IpAddr),
    KeyDef::new("ip.hdaddr", KeyType::IpAddr),
    KeyDef::new("orig.ip.hsaddr", KeyType::IpAddr),
    KeyDef::new("orig.ip.hdaddr", KeyType::IpAddr),
    KeyDef::new("reply.ip.hsaddr", KeyType::IpAddr),
    KeyDef::new("reply.ip.hdaddr", KeyType::IpAddr),
];

rulogd_plugin::plugin! {
    Filter "IP2HBIN" (default Ip2Hbin): "converts IP address keys to host byte order numbers (SQL integer columns)";
    input &IP_INPUT_KEYS;
    output &OUTPUT_KEYS;
}

#[derive(Default)]
struct Ip2Hbin(AddrSlots<6>);

impl Filter for Ip2Hbin {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.0 = AddrSlots::bind(b, &IP_KEYS);
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        // The value is an integer, not an address: the SQL outputs write
        // U32 as its decimal number, which is what the column wants.
        self.0.convert(rec, FamilyCheck::First, |w, a| match w {
            Width::V4 => Value::U32(u32::from_be_bytes([a[0], a[1], a[2], a[3]])),
            Width::V6 => Value::Ipv6(Ipv6Addr::from(*a)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Harness;
    use std::net::Ipv4Addr;

    fn harness(family: Option<u8>, protocol: Option<u16>) -> Harness {
        Harness::with_family(REGISTRATION, family, protocol)
    }

    #[test]
    fn ipv4_becomes_a_host_order_number() {
        let mut h = harness(Some(2), None);
        h.set("ip.saddr", Value::Ipv4(Ipv4Addr::new(192, 0, 2, 1)));
        h.set("ip.daddr", Value::Ipv4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(h.out_u64("ip.hsaddr"), Some(3_221_225_985));
        assert_eq!(h.out_u64("ip.hdaddr"), Some(167_772_161));
        assert_eq!(h.valid_outputs(), ["ip.hsaddr", "ip.hdaddr"]);
        h.assert_gap_untouched();
    }

    #[test]
    fn ipv6_stays_128_bits() {
        let mut h = harness(Some(10), None);
        let a: Ipv6Addr = "2001:db8::1".parse().expect("addr");
        h.set("reply.ip.saddr", Value::Ipv6(a));
        h.run();
        assert!(matches!(h.out("reply.ip.hsaddr"), Some(Value::Ipv6(x)) if *x == a));
    }

    #[test]
    fn all_six_keys_are_produced_including_the_last() {
        let mut h = harness(Some(2), None);
        for (i, k) in crate::addr::IP_KEYS.iter().enumerate() {
            h.set(k, Value::Ipv4(Ipv4Addr::new(0, 0, 1, i as u8)));
        }
        h.run();
        assert_eq!(h.valid_outputs().len(), 6);
        assert_eq!(h.out_u64("reply.ip.hdaddr"), Some(256 + 5));
    }

    #[test]
    fn unknown_family_fails_even_without_addresses() {
        for (fam, proto) in [
            (Some(0), None),
            (None, None),
            (Some(7), None),
            (Some(7), Some(0x88cc)),
        ] {
            let mut h = harness(fam, proto);
            assert_eq!(h.run(), Verdict::Drop, "{fam:?} {proto:?}");
        }
        for (fam, proto) in [(Some(2), None), (Some(10), None), (Some(7), Some(0x0800))] {
            let mut h = harness(fam, proto);
            assert_eq!(h.run(), Verdict::Continue, "{fam:?} {proto:?}");
        }
    }

    #[test]
    fn bridge_ipv6_by_ethertype() {
        let mut h = harness(Some(7), Some(0x86dd));
        let a: Ipv6Addr = "fe80::1".parse().expect("addr");
        h.set("ip.saddr", Value::Ipv6(a));
        h.run();
        assert!(matches!(h.out("ip.hsaddr"), Some(Value::Ipv6(x)) if *x == a));
    }

    #[test]
    fn declares_ulogd_keys() {
        let names: Vec<_> = INFO.output_keys.iter().map(|k| &*k.name).collect();
        assert_eq!(
            names,
            [
                "ip.hsaddr",
                "ip.hdaddr",
                "orig.ip.hsaddr",
                "orig.ip.hdaddr",
                "reply.ip.hsaddr",
                "reply.ip.hdaddr"
            ]
        );
        assert_eq!(INFO.input_keys.len(), 8);
    }
}
