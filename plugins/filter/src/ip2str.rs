//! IP2STR: turns the binary address keys into their text form, as
//! `inet_ntop` writes it.

use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Builder, Filter, InlineStr, KeyDef, KeyType, PluginInfo,
    PluginKind, Record, Registration, Slot, Value, Verdict,
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

/// `--info` description of IP2STR.
pub static INFO: PluginInfo = PluginInfo {
    name: "IP2STR",
    kind: PluginKind::Filter,
    summary: "converts IP address keys to text (inet_ntop)",
    options: &[],
    input_keys: &INPUT_KEYS,
    output_keys: &OUTPUT_KEYS,
    wildcard_input: false,
};

/// IP2STR's registration for the core.
pub const REGISTRATION: Registration = Registration {
    info: &INFO,
    builder: Builder::Filter(build),
};

fn build(_ctx: &BuildCtx) -> Result<Box<dyn Filter>, BuildError> {
    Ok(Box::new(Ip2Str::default()))
}

/// The address family the inputs are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

#[derive(Default)]
struct Ip2Str {
    family: Option<Slot>,
    protocol: Option<Slot>,
    inputs: [Option<Slot>; 8],
    outputs: [Option<Slot>; 8],
}

impl Ip2Str {
    /// The family of this record's addresses: from `oob.family`, or for
    /// bridge packets from the ethertype in `oob.protocol`. `None` where
    /// ulogd logs "unknown family" and fails the event.
    fn family(&self, rec: &Record) -> Option<Family> {
        match rec.get_u64(self.family).unwrap_or(0) as u8 {
            2 => Some(Family::V4),
            10 => Some(Family::V6),
            // Native ARP (ulogd master): IPv4 addresses.
            3 => Some(Family::V4),
            7 => match rec.get_u64(self.protocol)? as u16 {
                0x86dd => Some(Family::V6),
                0x0800 | 0x0806 => Some(Family::V4),
                _ => None,
            },
            _ => None,
        }
    }
}

impl Filter for Ip2Str {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.family = b.input("oob.family");
        self.protocol = b.input("oob.protocol");
        for (i, name) in ADDR_KEYS.iter().enumerate() {
            self.inputs[i] = b.input(name);
            self.outputs[i] = b.output_if_active(i);
        }
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        // ulogd only looks at the family once it has an address to convert,
        // so a record without addresses passes whatever its family.
        let mut family = None;
        for (&input, &output) in self.inputs.iter().zip(&self.outputs) {
            let Some(v) = rec.get_opt(input) else {
                continue;
            };
            let Some(addr) = octets(v) else {
                continue;
            };
            let fam = match family {
                Some(f) => f,
                None => match self.family(rec) {
                    Some(f) => *family.insert(f),
                    None => return Verdict::Drop,
                },
            };
            if let Some(out) = output {
                let s = match fam {
                    Family::V4 => format_v4([addr[0], addr[1], addr[2], addr[3]]),
                    Family::V6 => format_v6(addr),
                };
                rec.set(out, Value::Str(s));
            }
        }
        Verdict::Continue
    }
}

/// An address value as 16 bytes: IPv4 in the first four, like the value
/// union ulogd reads either width from (the family decides which).
fn octets(v: &Value) -> Option<[u8; 16]> {
    match v {
        Value::Ipv4(a) => {
            let [a, b, c, d] = a.octets();
            Some([a, b, c, d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        }
        Value::Ipv6(a) => Some(a.octets()),
        _ => None,
    }
}

/// The decimal text of every byte value: up to three digits, zero-filled
/// after them, and the digit count in the last byte.
static DEC: [[u8; 4]; 256] = {
    let mut t = [[0u8; 4]; 256];
    let mut v = 0;
    while v < 256 {
        let (h, d, o) = ((v / 100) as u8, (v / 10 % 10) as u8, (v % 10) as u8);
        t[v] = if v >= 100 {
            [b'0' + h, b'0' + d, b'0' + o, 3]
        } else if v >= 10 {
            [b'0' + d, b'0' + o, 0, 2]
        } else {
            [b'0' + o, 0, 0, 1]
        };
        v += 1;
    }
    t
};

/// Appends the decimal digits of `v`.
#[inline]
fn push_dec(buf: &mut [u8; 46], n: &mut usize, v: u8) {
    let d = &DEC[v as usize];
    // Always three bytes (one fixed-size copy), counting only the digits;
    // every caller leaves room for three more bytes.
    buf[*n..*n + 3].copy_from_slice(&d[..3]);
    *n += d[3] as usize;
}

/// Appends the lowercase hex digits of `v`, without leading zeros.
fn push_hex(buf: &mut [u8; 46], n: &mut usize, v: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut started = false;
    for shift in [12u32, 8, 4, 0] {
        let d = usize::from((v >> shift) & 0xf);
        if d != 0 || started || shift == 0 {
            started = true;
            buf[*n] = HEX[d];
            *n += 1;
        }
    }
}

/// Appends `a.b.c.d`.
fn push_v4(buf: &mut [u8; 46], n: &mut usize, a: [u8; 4]) {
    for (i, &o) in a.iter().enumerate() {
        if i > 0 {
            buf[*n] = b'.';
            *n += 1;
        }
        push_dec(buf, n, o);
    }
}

/// IPv4 dotted quad (at most 15 bytes, so the fixed buffer always fits).
pub(crate) fn format_v4(a: [u8; 4]) -> InlineStr {
    let mut buf = [0u8; 46];
    let mut n = 0;
    push_v4(&mut buf, &mut n, a);
    InlineStr::from_bytes(&buf[..n]).unwrap_or_default()
}

/// IPv6 text exactly as glibc's `inet_ntop` writes it: the first longest run
/// of two or more zero groups becomes `::`, and an address whose first 96
/// bits are zero (with a non-zero 7th group) or that is IPv4-mapped ends in
/// a dotted quad. std's `Display` differs on the former (`::102:304` where
/// glibc writes `::1.2.3.4`), hence this. At most 45 bytes, which fits.
pub(crate) fn format_v6(a: [u8; 16]) -> InlineStr {
    let w: [u16; 8] = std::array::from_fn(|i| u16::from_be_bytes([a[2 * i], a[2 * i + 1]]));
    // The first longest run of zeros, if at least two groups long.
    let (mut best, mut best_len, mut cur, mut cur_len) = (0, 0, 0, 0);
    for (i, &g) in w.iter().enumerate() {
        if g == 0 {
            if cur_len == 0 {
                cur = i;
            }
            cur_len += 1;
            if cur_len > best_len {
                best = cur;
                best_len = cur_len;
            }
        } else {
            cur_len = 0;
        }
    }
    let run = if best_len >= 2 {
        best..best + best_len
    } else {
        0..0
    };
    let mut buf = [0u8; 46];
    let mut n = 0;
    let mut i = 0;
    while i < 8 {
        if run.contains(&i) {
            if i == run.start {
                buf[n] = b':';
                n += 1;
            }
            i += 1;
            continue;
        }
        if i != 0 {
            buf[n] = b':';
            n += 1;
        }
        if i == 6 && run.start == 0 && (run.len() == 6 || (run.len() == 5 && w[5] == 0xffff)) {
            push_v4(&mut buf, &mut n, [a[12], a[13], a[14], a[15]]);
            return InlineStr::from_bytes(&buf[..n]).unwrap_or_default();
        }
        push_hex(&mut buf, &mut n, w[i]);
        i += 1;
    }
    if !run.is_empty() && run.end == 8 {
        buf[n] = b':';
        n += 1;
    }
    InlineStr::from_bytes(&buf[..n]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Harness;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // libc (the crate) does not bind inet_ntop; glibc has it.
    extern "C" {
        fn inet_ntop(
            af: libc::c_int,
            src: *const libc::c_void,
            dst: *mut libc::c_char,
            size: libc::socklen_t,
        ) -> *const libc::c_char;
    }

    /// What glibc's inet_ntop writes for `a` (4 or 16 bytes).
    fn ntop(a: &[u8]) -> String {
        let af = if a.len() == 4 {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let mut buf = [0 as libc::c_char; 64];
        // SAFETY: `a` holds an address of the family's size and `buf` is
        // larger than INET6_ADDRSTRLEN.
        let p = unsafe { inet_ntop(af, a.as_ptr().cast(), buf.as_mut_ptr(), 64) };
        assert!(!p.is_null());
        let n = buf.iter().position(|&c| c == 0).unwrap_or(0);
        buf[..n].iter().map(|&c| c as u8 as char).collect()
    }

    fn s(v: InlineStr) -> String {
        String::from_utf8(v.as_bytes().to_vec()).expect("ascii")
    }

    #[test]
    fn v6_text_equals_inet_ntop_on_edge_cases() {
        let cases = [
            "::",
            "::1",
            "::2",
            "1::",
            "::ffff:1.2.3.4",
            "::ffff:0.0.0.0",
            "::ffff:0.0.1.2",
            "::1.2.3.4",
            "::0.1.2.3",
            "::ffff:0:1.2.3.4",
            "0:0:0:0:1:ffff:102:304",
            "1:0:0:1::",
            "1::1:0:0:1",
            "1:0:0:2:0:0:0:3",
            "1:0:2:0:3:0:4:0",
            "0:1:0:1:0:1:0:1",
            "2001:db8::1",
            "2001:db8:0:0:1:0:0:1",
            "fe80::1:2:3:4",
            "ff02::1:ff00:1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "64:ff9b::102:304",
            "::ffff:255.255.255.255",
            "1:2:3:4:5:6:7:0",
            "0:1:2:3:4:5:6:7",
        ];
        for c in cases {
            let a: Ipv6Addr = c.parse().expect("test address");
            assert_eq!(s(format_v6(a.octets())), ntop(&a.octets()), "{c}");
        }
    }

    #[test]
    fn v6_text_equals_inet_ntop_on_random_addresses() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly zero groups, so every run layout shows up.
            let mut a = [0u8; 16];
            for g in 0..8 {
                let r = (x >> (g * 8)) as u8;
                let word: u16 = match r % 8 {
                    0..=3 => 0,
                    4 => 0xffff,
                    5 => u16::from(r),
                    _ => (x >> (g * 5)) as u16,
                };
                a[2 * g..2 * g + 2].copy_from_slice(&word.to_be_bytes());
            }
            assert_eq!(s(format_v6(a)), ntop(&a), "{a:02x?}");
        }
    }

    #[test]
    fn v4_text_equals_inet_ntop() {
        for a in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [10, 0, 100, 9],
            [1, 22, 133, 4],
        ] {
            assert_eq!(s(format_v4(a)), ntop(&a));
        }
        // Every byte value in every position (the digit table).
        for v in 0..=255u8 {
            for a in [[v, 0, 0, 0], [1, v, 22, 0], [0, 9, v, 100], [7, 7, 7, v]] {
                assert_eq!(s(format_v4(a)), ntop(&a));
            }
        }
        let mut x: u32 = 0x1234_5678;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let a = x.to_be_bytes();
            assert_eq!(s(format_v4(a)), ntop(&a));
        }
    }

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
