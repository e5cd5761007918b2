//! HWHDR: turns the packet's hardware header (`raw.mac`) and the sender's
//! hardware address (`raw.mac.saddr`) into `aa:bb:…` text, and for Ethernet
//! splits the header into destination, source and ethertype.

use rulogd_plugin::{
    Binding, BuildError, Filter, InlineStr, KeyDef, KeyType, Record, Slot, Value, Verdict,
};
use std::sync::Arc;

/// `ARPHRD_ETHER`: the header is a 14-byte Ethernet header.
const ARPHRD_ETHER: u16 = 1;
/// `ARPHRD_VOID`: the header type is unknown.
const ARPHRD_VOID: u16 = 0xffff;
/// Length of an Ethernet header (`ETH_HLEN`).
const ETH_HLEN: usize = 14;
/// Length of an Ethernet address (`ETH_ALEN`).
const ETH_ALEN: usize = 6;
/// ulogd formats into 128-byte buffers and fails the event when `len * 3 + 1`
/// does not fit, i.e. for more than 42 bytes; the same limit keeps a bogus
/// length from producing a huge string here.
const MAX_HW_BYTES: usize = 42;

static INPUT_KEYS: [KeyDef; 6] = [
    KeyDef::new("raw.type", KeyType::U16).optional(),
    KeyDef::new("oob.protocol", KeyType::U16),
    KeyDef::new("raw.mac", KeyType::Raw).optional(),
    KeyDef::new("raw.mac_len", KeyType::U16).optional(),
    KeyDef::new("raw.mac.saddr", KeyType::Raw).optional(),
    KeyDef::new("raw.mac.addrlen", KeyType::U16).optional(),
];

rulogd_plugin::key_table! {
    /// The output keys, in ulogd's order.
    static OUTPUT_KEYS: [KeyDef; N_OUTPUT_KEYS];
    O_TYPE = KeyDef::new("raw.type", KeyType::U16);
    O_PROTOCOL = KeyDef::new("oob.protocol", KeyType::U16);
    O_SADDR = KeyDef::new("mac.saddr.str", KeyType::String);
    O_DADDR = KeyDef::new("mac.daddr.str", KeyType::String);
    O_MAC = KeyDef::new("mac.str", KeyType::String);
}

rulogd_plugin::plugin! {
    Filter "HWHDR" (default HwHdr): "formats the hardware header and addresses as text (mac.str, mac.saddr.str, …)";
    input &INPUT_KEYS;
    output &OUTPUT_KEYS;
}

#[derive(Default)]
struct HwHdr {
    raw_type: Option<Slot>,
    protocol: Option<Slot>,
    mac: Option<Slot>,
    mac_len: Option<Slot>,
    saddr: Option<Slot>,
    addrlen: Option<Slot>,
    out: [Option<Slot>; 5],
}

/// `bytes` as lowercase `aa:bb:…` (empty for no bytes), inline when it fits.
/// `None` when there are more bytes than ulogd would format.
pub(crate) fn hex_colon(bytes: &[u8]) -> Option<Value> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if bytes.len() > MAX_HW_BYTES {
        return None;
    }
    let mut buf = [0u8; MAX_HW_BYTES * 3];
    let mut n = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if i > 0 {
            buf[n] = b':';
            n += 1;
        }
        buf[n] = HEX[usize::from(b >> 4)];
        buf[n + 1] = HEX[usize::from(b & 0xf)];
        n += 2;
    }
    let s = &buf[..n];
    Some(match InlineStr::from_bytes(s) {
        Some(i) => Value::Str(i),
        None => Value::Shared(Arc::from(s)),
    })
}

/// The first `len` bytes of a raw input, or as many as there really are
/// (ulogd trusts the length key and reads past a shorter buffer).
fn prefix_of(b: &[u8], len: u64) -> &[u8] {
    let n = usize::try_from(len).map_or(b.len(), |n| n.min(b.len()));
    &b[..n]
}

impl Filter for HwHdr {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.raw_type = b.input("raw.type");
        self.protocol = b.input("oob.protocol");
        self.mac = b.input("raw.mac");
        self.mac_len = b.input("raw.mac_len");
        self.saddr = b.input("raw.mac.saddr");
        self.addrlen = b.input("raw.mac.addrlen");
        for (i, o) in self.out.iter_mut().enumerate() {
            *o = b.output_if_active(i);
        }
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        let out = self.out;
        if let Some(p) = rec.get_u64(self.protocol) {
            rec.set_opt(out[O_PROTOCOL], Value::U16(p as u16));
        }
        // The sender's address as the kernel reports it (NFULA_HWADDR):
        // known to be an address, but not of which kind.
        let has_saddr = rec.get_opt(self.saddr).is_some();
        if has_saddr {
            // ulogd fails the event when the length is missing.
            let Some(len) = rec.get_u64(self.addrlen) else {
                return Verdict::Drop;
            };
            let Some(text) = hex_colon(prefix_of(rec.get_bytes(self.saddr).unwrap_or(&[]), len))
            else {
                return Verdict::Drop;
            };
            rec.set_opt(out[O_SADDR], text);
            rec.set_opt(out[O_TYPE], Value::U16(ARPHRD_VOID));
        }
        if rec.get_opt(self.mac).is_none() {
            return Verdict::Continue;
        }
        let Some(mac_len) = rec.get_u64(self.mac_len) else {
            return Verdict::Drop;
        };
        let hw_type = match rec.get_u64(self.raw_type) {
            Some(t) => t as u16,
            // Inputs without a header type (UNIXSOCK): ulogd 2.0.8 takes a
            // 14-byte header for Ethernet.
            None if mac_len as u16 as usize == ETH_HLEN => ARPHRD_ETHER,
            None => ARPHRD_VOID,
        };
        rec.set_opt(out[O_TYPE], Value::U16(hw_type));
        // ulogd reads the header through a u16 length.
        let header = prefix_of(rec.get_bytes(self.mac).unwrap_or(&[]), mac_len & 0xffff);
        let mut eth = None;
        // ulogd splits whatever the buffer holds; a header too short for
        // Ethernet is only printed whole.
        if hw_type == ARPHRD_ETHER {
            if let Some(h) = header.first_chunk::<ETH_HLEN>() {
                eth = Some((
                    hex_colon(&h[..ETH_ALEN]),
                    hex_colon(&h[ETH_ALEN..2 * ETH_ALEN]),
                    u16::from_be_bytes([h[12], h[13]]),
                ));
            }
        }
        let whole = hex_colon(header);
        if let Some((daddr, saddr, ethertype)) = eth {
            // An address from NFULA_HWADDR wins over the header's.
            if !has_saddr {
                rec.set_opt(out[O_SADDR], saddr.unwrap_or_default());
            }
            rec.set_opt(out[O_DADDR], daddr.unwrap_or_default());
            rec.set_opt(out[O_PROTOCOL], Value::U16(ethertype));
        }
        match whole {
            Some(v) => {
                rec.set_opt(out[O_MAC], v);
                Verdict::Continue
            }
            None => Verdict::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Harness;
    use rulogd_plugin::Span;

    /// A record buffer holding `mac` then `saddr`, with spans to both.
    fn harness(mac: Option<&[u8]>, saddr: Option<&[u8]>) -> Harness {
        let mut h = Harness::new(REGISTRATION);
        let mut buf = vec![0xee; 3];
        let mac_span = mac.map(|m| {
            let s = Span::new(buf.len(), m.len());
            buf.extend_from_slice(m);
            s
        });
        let sa_span = saddr.map(|a| {
            let s = Span::new(buf.len(), a.len());
            buf.extend_from_slice(a);
            s
        });
        h.rec.set_buf(buf.into());
        if let Some(s) = mac_span {
            h.set("raw.mac", Value::Raw(s));
            h.set("raw.mac_len", Value::U16(s.len as u16));
        }
        if let Some(s) = sa_span {
            h.set("raw.mac.saddr", Value::Raw(s));
            h.set("raw.mac.addrlen", Value::U16(s.len as u16));
        }
        h.set("oob.protocol", Value::U16(0x0800));
        h
    }

    const ETH: [u8; 14] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // destination
        0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, // source
        0x86, 0xdd, // ethertype IPv6
    ];

    #[test]
    fn ethernet_header_is_split() {
        let mut h = harness(Some(&ETH), None);
        h.set("raw.type", Value::U16(ARPHRD_ETHER));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(h.out_u64("raw.type"), Some(1));
        assert_eq!(h.out_u64("oob.protocol"), Some(0x86dd));
        assert_eq!(h.out_text("mac.daddr.str"), "02:00:00:00:00:01");
        assert_eq!(h.out_text("mac.saddr.str"), "aa:bb:cc:dd:ee:ff");
        assert_eq!(
            h.out_text("mac.str"),
            "02:00:00:00:00:01:aa:bb:cc:dd:ee:ff:86:dd"
        );
        // All three strings are kept (ulogd 2.0.8 had two buffers for them).
        assert!(matches!(h.out("mac.str"), Some(Value::Str(_))));
        h.assert_gap_untouched();
    }

    #[test]
    fn hwaddr_wins_and_sets_void_type_first() {
        let mut h = harness(Some(&ETH), Some(&[1, 2, 3, 4, 5, 6]));
        h.set("raw.type", Value::U16(ARPHRD_ETHER));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(h.out_text("mac.saddr.str"), "01:02:03:04:05:06");
        assert_eq!(h.out_text("mac.daddr.str"), "02:00:00:00:00:01");
        assert_eq!(h.out_u64("raw.type"), Some(1));

        // Without a header only the address is formatted, type VOID.
        let mut h = harness(None, Some(&[1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(h.out_text("mac.saddr.str"), "01:02:03:04:05:06:07:08");
        assert_eq!(h.out_u64("raw.type"), Some(0xffff));
        assert_eq!(h.out_u64("oob.protocol"), Some(0x0800));
        assert_eq!(
            h.valid_outputs(),
            ["raw.type", "oob.protocol", "mac.saddr.str"]
        );
    }

    #[test]
    fn type_falls_back_as_in_ulogd_2_0_8() {
        // No raw.type: 14 bytes are Ethernet.
        let mut h = harness(Some(&ETH), None);
        h.run();
        assert_eq!(h.out_u64("raw.type"), Some(1));
        assert_eq!(h.out_u64("oob.protocol"), Some(0x86dd));
        // Another length: VOID, printed whole, no split.
        let mut h = harness(Some(&ETH[..13]), None);
        h.run();
        assert_eq!(h.out_u64("raw.type"), Some(0xffff));
        assert_eq!(h.out_u64("oob.protocol"), Some(0x0800));
        assert_eq!(
            h.out_text("mac.str"),
            "02:00:00:00:00:01:aa:bb:cc:dd:ee:ff:86"
        );
        assert!(h.out("mac.daddr.str").is_none());
        // A non-Ethernet type is not split either.
        let mut h = harness(Some(&ETH), None);
        h.set("raw.type", Value::U16(772));
        h.run();
        assert_eq!(h.out_u64("raw.type"), Some(772));
        assert!(h.out("mac.saddr.str").is_none());
        assert_eq!(h.out_text("mac.str").len(), 41);
    }

    #[test]
    fn missing_lengths_fail_the_event_like_ulogd() {
        let mut h = Harness::with(REGISTRATION, |k| k != "raw.mac_len", |_| true);
        h.rec.set_buf(ETH.to_vec().into());
        h.set("oob.protocol", Value::U16(1));
        h.set("raw.mac", Value::Raw(Span::new(0, 14)));
        assert_eq!(h.run(), Verdict::Drop);

        let mut h = Harness::with(REGISTRATION, |k| k != "raw.mac.addrlen", |_| true);
        h.rec.set_buf(ETH.to_vec().into());
        h.set("oob.protocol", Value::U16(1));
        h.set("raw.mac.saddr", Value::Raw(Span::new(0, 6)));
        assert_eq!(h.run(), Verdict::Drop);
    }

    #[test]
    fn untrusted_lengths_never_read_past_the_bytes() {
        // An Ethernet type with a 5-byte header: printed, not split.
        let mut h = harness(Some(&ETH[..5]), None);
        h.set("raw.type", Value::U16(ARPHRD_ETHER));
        h.set("raw.mac_len", Value::U16(14));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(h.out_text("mac.str"), "02:00:00:00:00");
        assert!(h.out("mac.daddr.str").is_none());
        // A length beyond ulogd's 42-byte limit fails the event.
        let long = [7u8; 43];
        let mut h = harness(Some(&long), None);
        assert_eq!(h.run(), Verdict::Drop);
        // 42 bytes fit, as a shared string.
        let mut h = harness(Some(&long[..42]), None);
        assert_eq!(h.run(), Verdict::Continue);
        assert!(matches!(h.out("mac.str"), Some(Value::Shared(_))));
        assert_eq!(h.out_text("mac.str").len(), 42 * 3 - 1);
        // A zero length gives an empty string, as ulogd does.
        let mut h = harness(Some(&[]), None);
        h.set("raw.type", Value::U16(ARPHRD_ETHER));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(h.out_text("mac.str"), "");
    }

    #[test]
    fn inactive_outputs_are_not_written() {
        let mut h = Harness::with(REGISTRATION, |_| true, |k| k == "mac.str");
        h.rec.set_buf(ETH.to_vec().into());
        h.set("oob.protocol", Value::U16(1));
        h.set("raw.type", Value::U16(1));
        h.set("raw.mac", Value::Raw(Span::new(0, 14)));
        h.set("raw.mac_len", Value::U16(14));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(h.valid_outputs(), ["mac.str"]);
    }

    #[test]
    fn declares_ulogd_keys() {
        let ins: Vec<_> = INFO
            .input_keys
            .iter()
            .map(|k| (&*k.name, k.ty, k.is_optional()))
            .collect();
        assert_eq!(
            ins,
            [
                ("raw.type", KeyType::U16, true),
                ("oob.protocol", KeyType::U16, false),
                ("raw.mac", KeyType::Raw, true),
                ("raw.mac_len", KeyType::U16, true),
                ("raw.mac.saddr", KeyType::Raw, true),
                ("raw.mac.addrlen", KeyType::U16, true),
            ]
        );
        let outs: Vec<_> = INFO.output_keys.iter().map(|k| &*k.name).collect();
        assert_eq!(
            outs,
            [
                "raw.type",
                "oob.protocol",
                "mac.saddr.str",
                "mac.daddr.str",
                "mac.str"
            ]
        );
    }
}
