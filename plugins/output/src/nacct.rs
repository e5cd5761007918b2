//! NACCT: one tab-separated line per flow in the format of nacctd (net-acct),
//! as ulogd's `ulogd_output_NACCT` writes it:
//!
//! `flow.end.sec  proto  src  sport|icmp.type  dst  dport|icmp.code  packets  bytes`
//!
//! One fix: ulogd prints the reply direction's packets and bytes next to
//! the original direction's addresses; here they are the original
//! direction's, the traffic from `src` to `dst` (docs/COMPATIBILITY.md).
//! Like ulogd, a key without a value prints as 0 (a string as `(null)`).

use crate::rendered::{Render, Rendered};
use crate::text::{cstr, file_producer};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, KeyDef, KeyType, OptionDef, Output, Record, Slot,
};

static OPTIONS: [OptionDef; 2] = [
    OptionDef::str("file", "/var/log/ulogd_nacct.log", "Output file"),
    OptionDef::int(
        "sync",
        "0",
        "Hand every line to the writer at once instead of in 64 KiB batches",
    )
    .flag(),
];

rulogd_plugin::key_table! {
    /// ulogd's inputs and order; the counters are the original direction's.
    static INPUT: [KeyDef; N_INPUT];
    SADDR = KeyDef::new("orig.ip.saddr.str", KeyType::String);
    DADDR = KeyDef::new("orig.ip.daddr.str", KeyType::String);
    PROTO = KeyDef::new("orig.ip.protocol", KeyType::U8);
    SPORT = KeyDef::new("orig.l4.sport", KeyType::U16);
    DPORT = KeyDef::new("orig.l4.dport", KeyType::U16);
    BYTES = KeyDef::new("orig.raw.pktlen", KeyType::U64);
    PKTS = KeyDef::new("orig.raw.pktcount", KeyType::U64);
    ICMP_CODE = KeyDef::new("icmp.code", KeyType::U8);
    ICMP_TYPE = KeyDef::new("icmp.type", KeyType::U8);
    START = KeyDef::new("flow.start.sec", KeyType::U32);
    END = KeyDef::new("flow.end.sec", KeyType::U32);
}

rulogd_plugin::plugin! {
    Output "NACCT" (build): "Writes each flow as a tab-separated nacctd line to a file";
    options &OPTIONS;
    input &INPUT;
}

/// One NACCT instance in one stack.
pub struct Nacct {
    inputs: [Option<Slot>; 11],
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    Ok(Rendered::boxed(
        file_producer(ctx, "NACCT")?,
        Nacct { inputs: [None; 11] },
    ))
}

fn num(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

impl Nacct {
    /// ulogd reads every key without a validity check: absent is 0.
    fn u(&self, rec: &Record, k: usize) -> u64 {
        rec.get_u64(self.inputs[k]).unwrap_or(0)
    }

    fn s<'a>(&self, rec: &'a Record, k: usize) -> &'a [u8] {
        rec.get_bytes(self.inputs[k]).map_or(b"(null)", cstr)
    }
}

impl Render for Nacct {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        for (i, k) in INPUT.iter().enumerate() {
            self.inputs[i] = b.input(&k.name);
        }
        Ok(())
    }

    fn render(&mut self, rec: &Record, out: &mut Vec<u8>) -> bool {
        // Widths as ulogd's printf arguments take them.
        let proto = self.u(rec, PROTO) as u8;
        let (a, b) = if proto == 1 {
            (
                self.u(rec, ICMP_TYPE) as u8 as u64,
                self.u(rec, ICMP_CODE) as u8 as u64,
            )
        } else {
            (
                self.u(rec, SPORT) as u16 as u64,
                self.u(rec, DPORT) as u16 as u64,
            )
        };
        let end = self.u(rec, END) as u32;
        let (pkts, bytes) = (self.u(rec, PKTS), self.u(rec, BYTES));
        let (src, dst) = (self.s(rec, SADDR), self.s(rec, DADDR));
        num(out, u64::from(end));
        out.push(b'\t');
        num(out, u64::from(proto));
        out.push(b'\t');
        out.extend_from_slice(src);
        out.push(b'\t');
        num(out, a);
        out.push(b'\t');
        out.extend_from_slice(dst);
        out.push(b'\t');
        num(out, b);
        out.push(b'\t');
        num(out, pkts);
        out.push(b'\t');
        num(out, bytes);
        out.push(b'\n');
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{temp_dir, text, Harness};
    use rulogd_plugin::Value;

    const KEYS: [(&str, KeyType); 13] = [
        ("orig.ip.saddr.str", KeyType::String),
        ("orig.ip.daddr.str", KeyType::String),
        ("orig.ip.protocol", KeyType::U8),
        ("orig.l4.sport", KeyType::U16),
        ("orig.l4.dport", KeyType::U16),
        ("orig.raw.pktlen", KeyType::U64),
        ("orig.raw.pktcount", KeyType::U64),
        ("reply.raw.pktlen", KeyType::U64),
        ("reply.raw.pktcount", KeyType::U64),
        ("icmp.code", KeyType::U8),
        ("icmp.type", KeyType::U8),
        ("flow.start.sec", KeyType::U32),
        ("flow.end.sec", KeyType::U32),
    ];

    #[test]
    fn lines_as_nacctd_with_the_original_counters() {
        let dir = temp_dir("nacct");
        let f = dir.join("nacct.log");
        let mut h = Harness::new(REGISTRATION, &[("file", f.to_str().unwrap())], &KEYS);
        h.set("orig.ip.saddr.str", text("127.0.0.1"))
            .set("orig.ip.daddr.str", text("127.0.0.2"))
            .set("orig.ip.protocol", Value::U8(6))
            .set("orig.l4.sport", Value::U16(42838))
            .set("orig.l4.dport", Value::U16(45679))
            .set("orig.raw.pktlen", Value::U64(324))
            .set("orig.raw.pktcount", Value::U64(6))
            .set("reply.raw.pktlen", Value::U64(308))
            .set("reply.raw.pktcount", Value::U64(5))
            .set("flow.start.sec", Value::U32(1795444861))
            .set("flow.end.sec", Value::U32(1795444862));
        h.write();
        h.set("orig.ip.saddr.str", text("::1"))
            .set("orig.ip.daddr.str", text("::1"))
            .set("orig.ip.protocol", Value::U8(1))
            .set("icmp.type", Value::U8(8))
            .set("icmp.code", Value::U8(0))
            .set("orig.raw.pktcount", Value::U64(2))
            .set("orig.raw.pktlen", Value::U64(168));
        h.write();
        // Nothing valid: ulogd's zeros and (null).
        h.write();
        h.stop();
        let got = std::fs::read_to_string(&f).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            got,
            "1795444862\t6\t127.0.0.1\t42838\t127.0.0.2\t45679\t6\t324\n\
             0\t1\t::1\t8\t::1\t0\t2\t168\n\
             0\t0\t(null)\t0\t(null)\t0\t0\t0\n"
        );
    }
}
