//! What the address converters (IP2STR, IP2BIN, IP2HBIN) share: which width
//! a record's family says its addresses have, the 16 bytes of an address
//! value, and the loop that writes output `i` from address key `i`.
//! A helper, not a plugin.

use rulogd_plugin::{Binding, KeyDef, KeyType, Record, Slot, Value, Verdict};

/// The address keys IP2BIN and IP2HBIN convert, in ulogd's order.
pub(crate) const IP_KEYS: [&str; 6] = [
    "ip.saddr",
    "ip.daddr",
    "orig.ip.saddr",
    "orig.ip.daddr",
    "reply.ip.saddr",
    "reply.ip.daddr",
];

/// The inputs of IP2BIN and IP2HBIN: the family, then [`IP_KEYS`].
pub(crate) static IP_INPUT_KEYS: [KeyDef; 8] = [
    KeyDef::new("oob.family", KeyType::U8),
    KeyDef::new("oob.protocol", KeyType::U16),
    KeyDef::new("ip.saddr", KeyType::IpAddr).optional(),
    KeyDef::new("ip.daddr", KeyType::IpAddr).optional(),
    KeyDef::new("orig.ip.saddr", KeyType::IpAddr).optional(),
    KeyDef::new("orig.ip.daddr", KeyType::IpAddr).optional(),
    KeyDef::new("reply.ip.saddr", KeyType::IpAddr).optional(),
    KeyDef::new("reply.ip.daddr", KeyType::IpAddr).optional(),
];

/// Which width of the address value a record's family says to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Width {
    V4,
    V6,
}

/// The address width for this record, from `oob.family` or, for bridge
/// packets, from the ethertype in `oob.protocol`. `None` where ulogd logs an
/// unknown family and fails the event. Native ARP (family 3, ulogd master)
/// carries IPv4 addresses.
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

/// When the family is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FamilyCheck {
    /// Only once there is an address to convert (IP2STR, IP2BIN): a record
    /// without addresses passes whatever its family.
    AtFirstAddress,
    /// Before anything (IP2HBIN): an unknown family fails the event even
    /// without addresses.
    First,
}

/// The slots an address converter reads and writes: output `i` is address
/// key `i` converted.
pub(crate) struct AddrSlots<const N: usize> {
    family: Option<Slot>,
    protocol: Option<Slot>,
    inputs: [Option<Slot>; N],
    outputs: [Option<Slot>; N],
}

impl<const N: usize> Default for AddrSlots<N> {
    fn default() -> Self {
        AddrSlots {
            family: None,
            protocol: None,
            inputs: [None; N],
            outputs: [None; N],
        }
    }
}

impl<const N: usize> AddrSlots<N> {
    /// Binds `oob.family`, `oob.protocol`, the address keys `names` and the
    /// first `N` outputs.
    pub(crate) fn bind(b: &Binding, names: &[&str; N]) -> Self {
        let mut s = AddrSlots {
            family: b.input("oob.family"),
            protocol: b.input("oob.protocol"),
            ..AddrSlots::default()
        };
        for (i, name) in names.iter().enumerate() {
            s.inputs[i] = b.input(name);
            s.outputs[i] = b.output_if_active(i);
        }
        s
    }

    /// Writes `conv(width, address)` to the output of every valid address
    /// key; drops the record, as ulogd fails the event, when the family
    /// says no width.
    #[inline]
    pub(crate) fn convert(
        &self,
        rec: &mut Record,
        check: FamilyCheck,
        conv: impl Fn(Width, &[u8; 16]) -> Value,
    ) -> Verdict {
        let mut w = None;
        if check == FamilyCheck::First {
            match width(rec, self.family, self.protocol) {
                Some(x) => w = Some(x),
                None => return Verdict::Drop,
            }
        }
        for (&input, &output) in self.inputs.iter().zip(&self.outputs) {
            let Some(addr) = rec.get_opt(input).and_then(octets) else {
                continue;
            };
            let width = match w {
                Some(x) => x,
                None => match width(rec, self.family, self.protocol) {
                    Some(x) => *w.insert(x),
                    None => return Verdict::Drop,
                },
            };
            if let Some(out) = output {
                rec.set(out, conv(width, &addr));
            }
        }
        Verdict::Continue
    }
}
