//! PWSNIFF: picks clear-text user names and passwords (`USER x` / `PASS x`)
//! out of IPv4 TCP packets to the FTP (21) and POP3 (110) ports.
//!
//! ulogd 2.0.8 tests the validity of its own input key instead of the value
//! it points to, which is never set, so it stops every event without looking
//! at the packet. This is what that code was written to do; every record
//! passes on, with the keys set when something was found.

use rulogd_packet::{ip_proto, Ipv4Packet, TcpPacket};
use rulogd_plugin::{
    Binding, BuildError, Filter, KeyDef, KeyType, Record, Slot, Span, Value, Verdict,
};

/// Destination ports whose protocols send `USER name` / `PASS secret` lines.
const PORTS: [u16; 2] = [110, 21];

static INPUT_KEYS: [KeyDef; 2] = [
    // ulogd declares no type for it.
    KeyDef::new("raw.pkt", KeyType::None),
    // Not in ulogd: how much of raw.pkt was captured. Optional, so every
    // ulogd config that builds still builds.
    KeyDef::new("raw.pktlen", KeyType::U32).optional(),
];

static OUTPUT_KEYS: [KeyDef; 2] = [
    KeyDef::new("pwsniff.user", KeyType::String),
    KeyDef::new("pwsniff.pass", KeyType::String),
];

rulogd_plugin::plugin! {
    Filter "PWSNIFF" (default PwSniff): "extracts USER/PASS words from IPv4 TCP packets to ports 21 and 110";
    input &INPUT_KEYS;
    output &OUTPUT_KEYS;
}

#[derive(Default)]
struct PwSniff {
    pkt: Option<Slot>,
    pktlen: Option<Slot>,
    user: Option<Slot>,
    pass: Option<Slot>,
}

/// Where the user name and password are inside a packet (byte ranges).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) user: Option<std::ops::Range<usize>>,
    pub(crate) pass: Option<std::ops::Range<usize>>,
}

/// The TCP payload of an IPv4 packet to one of [`PORTS`], as a range of
/// `pkt`; `None` for anything else. Every length comes from the packet and
/// is checked against what was captured.
fn tcp_payload(pkt: &[u8]) -> Option<std::ops::Range<usize>> {
    let ip = Ipv4Packet::new_checked(pkt).ok()?;
    if ip.version() != 4 || ip.header_len() < Ipv4Packet::LEN || ip.protocol() != ip_proto::TCP {
        return None;
    }
    // A later fragment carries payload where the TCP header would be.
    if ip.frag_offset() != 0 {
        return None;
    }
    // The IP total length bounds the payload (Ethernet padding is not
    // data), and so does the capture.
    let segment = ip.payload_in_total_len()?;
    let tcp = TcpPacket::new_checked(segment).ok()?;
    if !PORTS.contains(&tcp.dst_port()) {
        return None;
    }
    let data = tcp.payload()?;
    let start = ip.header_len() + tcp.header_len();
    Some(start..start + data.len())
}

/// The word after the last `USER ` / `PASS ` (any case) that ends with a
/// space, CR or LF before the end of the payload. An unterminated or empty
/// word is not taken, as in ulogd.
pub(crate) fn find(pkt: &[u8]) -> Found {
    let mut found = Found::default();
    let Some(range) = tcp_payload(pkt) else {
        return found;
    };
    let base = range.start;
    let data = &pkt[range];
    let word_at = |start: usize| -> Option<std::ops::Range<usize>> {
        let rest = data.get(start..)?;
        let n = rest
            .iter()
            .position(|&c| matches!(c, b' ' | b'\r' | b'\n'))?;
        (n > 0).then(|| base + start..base + start + n)
    };
    for i in 0..data.len().saturating_sub(4) {
        let tag = &data[i..i + 5];
        if tag.eq_ignore_ascii_case(b"USER ") {
            if let Some(w) = word_at(i + 5) {
                found.user = Some(w);
            }
        } else if tag.eq_ignore_ascii_case(b"PASS ") {
            if let Some(w) = word_at(i + 5) {
                found.pass = Some(w);
            }
        }
    }
    found
}

impl Filter for PwSniff {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.pkt = b.input("raw.pkt");
        self.pktlen = b.input("raw.pktlen");
        self.user = b.output_if_active(0);
        self.pass = b.output_if_active(1);
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        if self.user.is_none() && self.pass.is_none() {
            return Verdict::Continue;
        }
        // Packet bytes in the record's buffer give spans (no copy).
        let (data, base) = match rec.get_opt(self.pkt) {
            Some(Value::Raw(s) | Value::StrSpan(s)) => (rec.span(*s), Some(s.off as usize)),
            Some(v) => (rec.bytes_of(v).unwrap_or(&[]), None),
            None => return Verdict::Continue,
        };
        let n = match rec.get_u64(self.pktlen) {
            Some(l) => usize::try_from(l).map_or(data.len(), |l| l.min(data.len())),
            None => data.len(),
        };
        let data = &data[..n];
        let found = find(data);
        let value = |r: std::ops::Range<usize>| match base {
            Some(b) => Value::StrSpan(Span::new(b + r.start, r.len())),
            None => Value::text(&data[r]),
        };
        let user = found.user.map(value);
        let pass = found.pass.map(value);
        if let Some(v) = user {
            rec.set_opt(self.user, v);
        }
        if let Some(v) = pass {
            rec.set_opt(self.pass, v);
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Harness;

    /// IPv4/TCP 10.0.0.1:40000 → 10.0.0.2:`dport` with `payload`, a 12-byte
    /// TCP option block (so the payload does not start at byte 20 of TCP)
    /// and `pad` bytes after the IP total length (Ethernet padding).
    fn tcp4(dport: u16, payload: &[u8], pad: usize) -> Vec<u8> {
        let total = 20 + 32 + payload.len();
        let mut p = vec![
            0x45, 0x00, // version 4, ihl 5; tos
        ];
        p.extend_from_slice(&(total as u16).to_be_bytes()); // totlen
        p.extend_from_slice(&[0x00, 0x01, 0x40, 0x00]); // id; DF
        p.extend_from_slice(&[64, 6, 0, 0]); // ttl; TCP; checksum
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]); // addresses
        p.extend_from_slice(&40000u16.to_be_bytes()); // sport
        p.extend_from_slice(&dport.to_be_bytes()); // dport
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // seq, ack
        p.extend_from_slice(&[0x80, 0x18, 0xff, 0xff, 0, 0, 0, 0]); // doff 8; PSH ACK
        p.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]); // NOP NOP timestamps
        p.extend_from_slice(payload);
        p.extend(std::iter::repeat_n(b'x', pad));
        p
    }

    fn text(h: &Harness, k: &str) -> Option<String> {
        h.out_bytes(k)
            .map(|b| String::from_utf8(b.to_vec()).expect("ascii"))
    }

    #[test]
    fn ftp_login_in_one_packet() {
        let mut h = Harness::new(REGISTRATION);
        h.set_packet(&tcp4(21, b"USER bob\r\nPASS secret\r\n", 0));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(text(&h, "pwsniff.user").as_deref(), Some("bob"));
        assert_eq!(text(&h, "pwsniff.pass").as_deref(), Some("secret"));
        // Spans into the packet buffer: nothing was copied.
        assert!(matches!(h.out("pwsniff.user"), Some(Value::StrSpan(_))));
        h.assert_gap_untouched();
    }

    #[test]
    fn pop3_any_case_and_separate_packets() {
        let mut h = Harness::new(REGISTRATION);
        h.set_packet(&tcp4(110, b"user alice\n", 0));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(text(&h, "pwsniff.user").as_deref(), Some("alice"));
        assert_eq!(text(&h, "pwsniff.pass"), None);
        h.clear();
        h.set_packet(&tcp4(110, b"Pass hunter2 \r\n", 0));
        h.run();
        assert_eq!(text(&h, "pwsniff.user"), None);
        assert_eq!(text(&h, "pwsniff.pass").as_deref(), Some("hunter2"));
    }

    #[test]
    fn nothing_for_other_packets_but_they_pass() {
        let cases: Vec<Vec<u8>> = vec![
            tcp4(80, b"USER bob\r\n", 0),   // another port
            tcp4(21, b"USER bob", 0),       // no terminator
            tcp4(21, b"USER \r\nPASS ", 0), // empty word, no terminator
            tcp4(21, b"USER bob", 4),       // padding is not the terminator
            tcp4(21, b"", 0),               // no payload
            {
                let mut p = tcp4(21, b"USER bob\r\n", 0);
                p[9] = 17; // UDP
                p
            },
            {
                let mut p = tcp4(21, b"USER bob\r\n", 0);
                p[7] = 1; // a later fragment
                p
            },
            {
                let mut p = tcp4(21, b"USER bob\r\n", 0);
                p[0] = 0x65; // IPv6 version nibble
                p
            },
        ];
        for (i, p) in cases.iter().enumerate() {
            let mut h = Harness::new(REGISTRATION);
            h.set_packet(p);
            assert_eq!(h.run(), Verdict::Continue, "case {i}");
            assert!(h.valid_outputs().is_empty(), "case {i}");
        }
    }

    #[test]
    fn truncated_and_hostile_lengths_never_panic() {
        let full = tcp4(21, b"USER bob\r\nPASS secret\r\n", 0);
        for n in 0..=full.len() {
            let f = find(&full[..n]);
            if n == full.len() {
                assert!(f.user.is_some() && f.pass.is_some());
            }
            let mut h = Harness::new(REGISTRATION);
            h.set_packet(&full[..n]);
            h.run();
        }
        // raw.pktlen smaller than the buffer cuts the packet.
        let mut h = Harness::new(REGISTRATION);
        h.set_packet(&full);
        h.set("raw.pktlen", Value::U32(full.len() as u32 - 10));
        h.run();
        assert_eq!(text(&h, "pwsniff.user").as_deref(), Some("bob"));
        assert_eq!(text(&h, "pwsniff.pass"), None);
        // Bogus ihl, data offset and total length.
        for (at, v) in [
            (0, 0x4f),
            (0, 0x41),
            (32, 0xf0),
            (32, 0x10),
            (2, 0xff),
            (3, 0),
        ] {
            let mut p = full.clone();
            p[at] = v;
            let _ = find(&p);
        }
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut p = full.clone();
            let at = (x as usize) % p.len();
            p[at] = (x >> 8) as u8;
            p.truncate((x >> 16) as usize % (p.len() + 1));
            let _ = find(&p);
        }
    }

    #[test]
    fn last_complete_word_wins() {
        let p = tcp4(21, b"USER a\r\nUSER bb\r\nUSER ccc", 0);
        let f = find(&p);
        assert_eq!(&p[f.user.expect("user")], b"bb");
    }

    #[test]
    fn declares_ulogd_keys() {
        assert_eq!(INFO.input_keys[0].name, "raw.pkt");
        assert!(!INFO.input_keys[0].is_optional());
        assert!(INFO.input_keys[1].is_optional());
        let outs: Vec<_> = INFO.output_keys.iter().map(|k| &*k.name).collect();
        assert_eq!(outs, ["pwsniff.user", "pwsniff.pass"]);
    }
}
