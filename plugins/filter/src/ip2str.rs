//! IP2STR: turns the binary address keys into their text form, as
//! `inet_ntop` writes it.

use crate::addr::{AddrSlots, FamilyCheck, Width};
use rulogd_plugin::addr_text::{ipv4_text, ipv6_text, LEN};
use rulogd_plugin::{
    Binding, BuildError, Filter, InlineStr, KeyDef, KeyType, Record, Value, Verdict,
};

/// The address keys IP2STR converts, each giving `<name>.str`.
const ADDR_KEYS: [&str; 8] = [
    "ip.saddr",
    "ip.daddr",
    "orig.ip.saddr",
    "orig.ip.daddr",
    "reply.ip.saddr",
    "reply.ip.daddr",
    "arp.saddr",
    "arp.daddr",
];

static INPUT_KEYS: [KeyDef; 10] = [
    KeyDef::new("oob.family", KeyType::U8),
    KeyDef::new("oob.protocol", KeyType::U16),
    KeyDef::new("ip.saddr", KeyType::IpAddr).optional(),
    KeyDef::new("ip.daddr", KeyType::IpAddr).optional(),
    KeyDef::new("orig.ip.saddr", KeyType::IpAddr).optional(),
    KeyDef::new("orig.ip.daddr", KeyType::IpAddr).optional(),
    KeyDef::new("reply.ip.saddr", KeyType::IpAddr).optional(),
    KeyDef::new("reply.ip.daddr", KeyType::IpAddr).optional(),
    KeyDef::new("arp.saddr", KeyType::IpAddr).optional(),
    KeyDef::new("arp.daddr", KeyType::IpAddr).optional(),
];

static OUTPUT_KEYS: [KeyDef; 8] = [
    KeyDef::new("ip.saddr.str", KeyType::String).cim("src_ip"),
    KeyDef::new("ip.daddr.str", KeyType::String).cim("dest_ip"),
    KeyDef::new("orig.ip.saddr.str", KeyType::String).cim("src_ip"),
    KeyDef::new("orig.ip.daddr.str", KeyType::String).cim("dest_ip"),
    KeyDef::new("reply.ip.saddr.str", KeyType::String),
    KeyDef::new("reply.ip.daddr.str", KeyType::String),
    KeyDef::new("arp.saddr.str", KeyType::String),
    KeyDef::new("arp.daddr.str", KeyType::String),
];

rulogd_plugin::plugin! {
    Filter "IP2STR" (default Ip2Str): "converts IP address keys to text (inet_ntop)";
    input &INPUT_KEYS;
    output &OUTPUT_KEYS;
}

#[derive(Default)]
struct Ip2Str(AddrSlots<8>);

impl Filter for Ip2Str {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.0 = AddrSlots::bind(b, &ADDR_KEYS);
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        self.0.convert(rec, FamilyCheck::AtFirstAddress, |w, a| {
            Value::Str(match w {
                Width::V4 => format_v4([a[0], a[1], a[2], a[3]]),
                Width::V6 => format_v6(*a),
            })
        })
    }
}

/// IPv4 text as `inet_ntop` writes it.
#[inline]
pub(crate) fn format_v4(a: [u8; 4]) -> InlineStr {
    InlineStr::from_bytes(ipv4_text(a, &mut [0; LEN])).unwrap_or_default()
}

/// IPv6 text as glibc's `inet_ntop` writes it.
#[inline]
pub(crate) fn format_v6(a: [u8; 16]) -> InlineStr {
    InlineStr::from_bytes(ipv6_text(a, &mut [0; LEN])).unwrap_or_default()
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
    fn converts_every_valid_address_by_family() {
        let mut h = harness(Some(2), Some(0x0800));
        h.set("ip.saddr", Value::Ipv4(Ipv4Addr::new(127, 0, 0, 1)));
        h.set("ip.daddr", Value::Ipv4(Ipv4Addr::new(10, 1, 2, 3)));
        h.set("reply.ip.daddr", Value::Ipv4(Ipv4Addr::new(8, 8, 8, 8)));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(h.out_text("ip.saddr.str"), "127.0.0.1");
        assert_eq!(h.out_text("ip.daddr.str"), "10.1.2.3");
        assert_eq!(h.out_text("reply.ip.daddr.str"), "8.8.8.8");
        assert_eq!(
            h.valid_outputs(),
            ["ip.saddr.str", "ip.daddr.str", "reply.ip.daddr.str"]
        );
        h.assert_gap_untouched();

        let mut h = harness(Some(10), None);
        h.set("orig.ip.saddr", Value::Ipv6("::1".parse().expect("addr")));
        h.set(
            "orig.ip.daddr",
            Value::Ipv6("::ffff:1.2.3.4".parse().expect("addr")),
        );
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(h.out_text("orig.ip.saddr.str"), "::1");
        assert_eq!(h.out_text("orig.ip.daddr.str"), "::ffff:1.2.3.4");
    }

    #[test]
    fn bridge_family_comes_from_the_ethertype() {
        let mut h = harness(Some(7), Some(0x86dd));
        h.set(
            "ip.saddr",
            Value::Ipv6("2001:db8::1".parse().expect("addr")),
        );
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(h.out_text("ip.saddr.str"), "2001:db8::1");

        for (fam, proto) in [(7, Some(0x0806)), (3, None)] {
            let mut h = harness(Some(fam), proto);
            h.set("arp.saddr", Value::Ipv4(Ipv4Addr::new(192, 168, 1, 2)));
            h.set("arp.daddr", Value::Ipv4(Ipv4Addr::new(192, 168, 1, 1)));
            assert_eq!(h.run(), Verdict::Continue);
            assert_eq!(h.out_text("arp.saddr.str"), "192.168.1.2");
            assert_eq!(h.out_text("arp.daddr.str"), "192.168.1.1");
        }
    }

    #[test]
    fn unknown_family_fails_the_event_only_with_an_address() {
        for (fam, proto) in [
            (Some(0), None),
            (None, None),
            (Some(7), None),
            (Some(7), Some(0x8100)),
        ] {
            let mut h = harness(fam, proto);
            assert_eq!(
                h.run(),
                Verdict::Continue,
                "{fam:?} {proto:?} without address"
            );
            h.set("ip.saddr", Value::Ipv4(Ipv4Addr::new(1, 2, 3, 4)));
            assert_eq!(h.run(), Verdict::Drop, "{fam:?} {proto:?}");
        }
    }

    #[test]
    fn family_decides_the_width_read() {
        // As in ulogd, the family (not the value) decides how much is read.
        let mut h = harness(Some(2), None);
        h.set("ip.saddr", Value::Ipv6("102:304::".parse().expect("addr")));
        h.run();
        assert_eq!(h.out_text("ip.saddr.str"), "1.2.3.4");
        let mut h = harness(Some(10), None);
        h.set("ip.saddr", Value::Ipv4(Ipv4Addr::new(1, 2, 3, 4)));
        h.run();
        assert_eq!(h.out_text("ip.saddr.str"), "102:304::");
    }

    #[test]
    fn inactive_outputs_are_skipped_but_still_checked() {
        let mut h = Harness::with(REGISTRATION, |_| true, |k| k == "ip.daddr.str");
        h.set("oob.family", Value::U8(2));
        h.set("ip.saddr", Value::Ipv4(Ipv4Addr::new(1, 2, 3, 4)));
        h.set("ip.daddr", Value::Ipv4(Ipv4Addr::new(5, 6, 7, 8)));
        h.run();
        assert_eq!(h.valid_outputs(), ["ip.daddr.str"]);
    }

    #[test]
    fn declares_ulogd_keys_and_cim_names() {
        let names: Vec<_> = INFO.output_keys.iter().map(|k| (&*k.name, k.cim)).collect();
        assert_eq!(
            names,
            [
                ("ip.saddr.str", Some("src_ip")),
                ("ip.daddr.str", Some("dest_ip")),
                ("orig.ip.saddr.str", Some("src_ip")),
                ("orig.ip.daddr.str", Some("dest_ip")),
                ("reply.ip.saddr.str", None),
                ("reply.ip.daddr.str", None),
                ("arp.saddr.str", None),
                ("arp.daddr.str", None),
            ]
        );
        assert!(INFO.input_keys[..2].iter().all(|k| !k.is_optional()));
        assert!(INFO.input_keys[2..].iter().all(|k| k.is_optional()));
    }
}
