//! PRINTFLOW: one text line per flow, as ulogd's `util/printflow.c` writes
//! it, in key `print` for LOGEMU, SYSLOG or JSON:
//!
//! `[DESTROY] ORIG: SRC=… DST=… PROTO=TCP SPT=… DPT=… PKTS=… BYTES=… , REPLY: …\n`
//!
//! One fix: ulogd prints the ICMP code after `TYPE=` and the type after
//! `CODE=`; here `TYPE=` is the type (docs/COMPATIBILITY.md).

use rulogd_plugin::{Binding, BuildError, Filter, KeyDef, KeyType, Record, Slot, Value, Verdict};

rulogd_plugin::key_table! {
    /// The inputs, in ulogd's order and with its declared types (the address
    /// strings are declared IPADDR there).
    static INPUT_KEYS: [KeyDef; N_INPUT];
    ORIG_SADDR = KeyDef::new("orig.ip.saddr.str", KeyType::IpAddr);
    ORIG_DADDR = KeyDef::new("orig.ip.daddr.str", KeyType::IpAddr);
    ORIG_PROTO = KeyDef::new("orig.ip.protocol", KeyType::U8);
    ORIG_SPORT = KeyDef::new("orig.l4.sport", KeyType::U16);
    ORIG_DPORT = KeyDef::new("orig.l4.dport", KeyType::U16);
    ORIG_BYTES = KeyDef::new("orig.raw.pktlen", KeyType::U64);
    ORIG_PKTS = KeyDef::new("orig.raw.pktcount", KeyType::U64);
    REPLY_SADDR = KeyDef::new("reply.ip.saddr.str", KeyType::IpAddr);
    REPLY_DADDR = KeyDef::new("reply.ip.daddr.str", KeyType::IpAddr);
    REPLY_PROTO = KeyDef::new("reply.ip.protocol", KeyType::U8);
    REPLY_SPORT = KeyDef::new("reply.l4.sport", KeyType::U16);
    REPLY_DPORT = KeyDef::new("reply.l4.dport", KeyType::U16);
    REPLY_BYTES = KeyDef::new("reply.raw.pktlen", KeyType::U64);
    REPLY_PKTS = KeyDef::new("reply.raw.pktcount", KeyType::U64);
    ICMP_CODE = KeyDef::new("icmp.code", KeyType::U8);
    ICMP_TYPE = KeyDef::new("icmp.type", KeyType::U8);
    EVENT = KeyDef::new("ct.event", KeyType::U32);
}

static OUTPUT_KEYS: [KeyDef; 1] = [KeyDef::new("print", KeyType::String)];

rulogd_plugin::plugin! {
    Filter "PRINTFLOW" (default PrintFlow): "writes a flow as one text line (key print) for LOGEMU, SYSLOG or JSON";
    input &INPUT_KEYS;
    output &OUTPUT_KEYS;
}

// A direction's keys are at `base + offset`, the same offsets for both.
const ORIG: usize = ORIG_SADDR;
const REPLY: usize = REPLY_SADDR;
const SADDR: usize = 0;
const DADDR: usize = 1;
const PROTO: usize = 2;
const SPORT: usize = 3;
const DPORT: usize = 4;
const BYTES: usize = 5;
const PKTS: usize = 6;
const _: () = assert!(
    ORIG_DADDR == ORIG + DADDR
        && ORIG_PROTO == ORIG + PROTO
        && ORIG_SPORT == ORIG + SPORT
        && ORIG_DPORT == ORIG + DPORT
        && ORIG_BYTES == ORIG + BYTES
        && ORIG_PKTS == ORIG + PKTS
        && REPLY_DADDR == REPLY + DADDR
        && REPLY_PROTO == REPLY + PROTO
        && REPLY_SPORT == REPLY + SPORT
        && REPLY_DPORT == REPLY + DPORT
        && REPLY_BYTES == REPLY + BYTES
        && REPLY_PKTS == REPLY + PKTS
);

#[derive(Default)]
struct PrintFlow {
    inputs: [Option<Slot>; 17],
    out: Option<Slot>,
    /// The line being built, reused across records.
    line: Vec<u8>,
}

/// `label=<n> ` when the key is valid (ulogd's `pp_print_u`).
fn num(line: &mut Vec<u8>, label: &[u8], v: Option<u64>) {
    if let Some(v) = v {
        line.extend_from_slice(label);
        line.push(b'=');
        line.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        line.push(b' ');
    }
}

/// A C string as `%s` prints it: up to its first NUL.
fn cstr(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
}

impl PrintFlow {
    fn u(&self, rec: &Record, k: usize) -> Option<u64> {
        rec.get_u64(self.inputs[k])
    }

    fn direction(&mut self, rec: &Record, base: usize) {
        let mut line = std::mem::take(&mut self.line);
        for (k, label) in [(SADDR, &b"SRC="[..]), (DADDR, b"DST=")] {
            if let Some(s) = rec.get_bytes(self.inputs[base + k]) {
                line.extend_from_slice(label);
                line.extend_from_slice(cstr(s));
                line.push(b' ');
            }
        }
        // ulogd reads the protocol as a u8.
        if let Some(p) = self.u(rec, base + PROTO).map(|p| p as u8) {
            match p {
                6 | 17 => {
                    line.extend_from_slice(if p == 6 { b"PROTO=TCP " } else { b"PROTO=UDP " });
                    num(
                        &mut line,
                        b"SPT",
                        self.u(rec, base + SPORT).map(|v| v & 0xffff),
                    );
                    num(
                        &mut line,
                        b"DPT",
                        self.u(rec, base + DPORT).map(|v| v & 0xffff),
                    );
                }
                1 => {
                    line.extend_from_slice(b"PROTO=ICMP ");
                    num(&mut line, b"TYPE", self.u(rec, ICMP_TYPE).map(|v| v & 0xff));
                    num(&mut line, b"CODE", self.u(rec, ICMP_CODE).map(|v| v & 0xff));
                }
                50 => line.extend_from_slice(b"PROTO=ESP "),
                51 => line.extend_from_slice(b"PROTO=AH "),
                p => num(&mut line, b"PROTO", Some(u64::from(p))),
            }
        }
        num(&mut line, b"PKTS", self.u(rec, base + PKTS));
        num(&mut line, b"BYTES", self.u(rec, base + BYTES));
        self.line = line;
    }
}

impl Filter for PrintFlow {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        for (i, k) in INPUT_KEYS.iter().enumerate() {
            self.inputs[i] = b.input(&k.name);
        }
        self.out = b.output_if_active(0);
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        let Some(out) = self.out else {
            return Verdict::Continue;
        };
        self.line.clear();
        match self.u(rec, EVENT).map(|e| e as u32) {
            Some(1) => self.line.extend_from_slice(b"[NEW] "),
            Some(2) => self.line.extend_from_slice(b"[UPDATE] "),
            Some(4) => self.line.extend_from_slice(b"[DESTROY] "),
            _ => {}
        }
        self.line.extend_from_slice(b"ORIG: ");
        self.direction(rec, ORIG);
        self.line.extend_from_slice(b", REPLY: ");
        self.direction(rec, REPLY);
        self.line.push(b'\n');
        // The line is longer than an inline string, so this is one shared
        // allocation per flow record.
        rec.set(out, Value::text(&self.line));
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Harness;

    fn s(v: &str) -> Value {
        Value::text(v.as_bytes())
    }

    fn flow(h: &mut Harness, proto: u8, event: u32) {
        for (d, src, dst) in [
            ("orig", "127.0.0.1", "127.0.0.2"),
            ("reply", "127.0.0.2", "127.0.0.1"),
        ] {
            h.set(&format!("{d}.ip.saddr.str"), s(src));
            h.set(&format!("{d}.ip.daddr.str"), s(dst));
            h.set(&format!("{d}.ip.protocol"), Value::U8(proto));
        }
        h.set("orig.raw.pktlen", Value::U64(324));
        h.set("orig.raw.pktcount", Value::U64(6));
        h.set("reply.raw.pktlen", Value::U64(308));
        h.set("reply.raw.pktcount", Value::U64(5));
        h.set("ct.event", Value::U32(event));
    }

    fn line(h: &mut Harness) -> String {
        assert_eq!(h.run(), Verdict::Continue);
        String::from_utf8(h.out_bytes("print").expect("print").to_vec()).unwrap()
    }

    #[test]
    fn tcp_destroy_as_ulogd_prints_it() {
        let mut h = Harness::new(REGISTRATION);
        flow(&mut h, 6, 4);
        h.set("orig.l4.sport", Value::U16(42838));
        h.set("orig.l4.dport", Value::U16(45679));
        h.set("reply.l4.sport", Value::U16(45679));
        h.set("reply.l4.dport", Value::U16(42838));
        assert_eq!(
            line(&mut h),
            "[DESTROY] ORIG: SRC=127.0.0.1 DST=127.0.0.2 PROTO=TCP SPT=42838 DPT=45679 PKTS=6 BYTES=324 , REPLY: SRC=127.0.0.2 DST=127.0.0.1 PROTO=TCP SPT=45679 DPT=42838 PKTS=5 BYTES=308 \n"
        );
    }

    #[test]
    fn icmp_type_and_code_in_their_places() {
        let mut h = Harness::new(REGISTRATION);
        flow(&mut h, 1, 1);
        h.set("icmp.type", Value::U8(8));
        h.set("icmp.code", Value::U8(3));
        let l = line(&mut h);
        assert!(
            l.starts_with(
                "[NEW] ORIG: SRC=127.0.0.1 DST=127.0.0.2 PROTO=ICMP TYPE=8 CODE=3 PKTS=6"
            ),
            "{l}"
        );
        assert!(
            l.contains(", REPLY: SRC=127.0.0.2 DST=127.0.0.1 PROTO=ICMP TYPE=8 CODE=3 PKTS=5"),
            "{l}"
        );
    }

    #[test]
    fn other_protocols_and_missing_keys() {
        let mut h = Harness::new(REGISTRATION);
        flow(&mut h, 58, 2);
        assert!(
            line(&mut h).starts_with("[UPDATE] ORIG: SRC=127.0.0.1 DST=127.0.0.2 PROTO=58 PKTS=6")
        );
        h.clear();
        flow(&mut h, 50, 7);
        assert!(line(&mut h).starts_with("ORIG: SRC=127.0.0.1 DST=127.0.0.2 PROTO=ESP PKTS"));
        h.clear();
        // Nothing valid: the bare frame.
        h.set("ct.event", Value::U32(4));
        assert_eq!(line(&mut h), "[DESTROY] ORIG: , REPLY: \n");
        assert_eq!(h.valid_outputs(), ["print"]);
    }
}
