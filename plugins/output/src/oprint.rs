//! OPRINT: a debugging dump of every key, as ulogd 2.0.9's
//! `ulogd_output_OPRINT` writes it: `===>PACKET BOUNDARY` and then one
//! `name=value` line per valid upstream key.
//!
//! Values: strings as they are (up to a NUL), integers in decimal, booleans
//! as 0/1, addresses as `inet_ntop` writes them (ulogd 2.0.8 printed IPv4
//! byte-reversed and IPv6 as a reversed dotted quad of its first four bytes),
//! 64-bit signed integers as numbers (2.0.8 printed `default`), keys of
//! unknown type as `<none>` and raw data as `default`.

use crate::rendered::{Render, Rendered};
use crate::text::{cstr, file_producer, push_addr, push_number, wildcard_fields, Field};
use rulogd_plugin::{Binding, BuildCtx, BuildError, KeyType, OptionDef, Output, Record};

static OPTIONS: [OptionDef; 2] = [
    OptionDef::str("file", "/var/log/ulogd_oprint.log", "Output file"),
    OptionDef::int(
        "sync",
        "0",
        "Hand every record to the writer at once instead of in 64 KiB batches",
    )
    .flag(),
];

rulogd_plugin::plugin! {
    Output "OPRINT" wildcard (build): "Writes every key of a record as name=value lines (debugging)";
    options &OPTIONS;
}

/// One OPRINT instance in one stack.
pub struct Oprint {
    fields: Vec<Field>,
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    Ok(Rendered::boxed(
        file_producer(ctx, "OPRINT")?,
        Oprint { fields: Vec::new() },
    ))
}

/// Appends `value` of a key declared `ty` as OPRINT prints it.
fn push_value(out: &mut Vec<u8>, rec: &Record, ty: KeyType, v: &rulogd_plugin::Value) {
    match ty {
        KeyType::Raw | KeyType::RawStr => out.extend_from_slice(b"default"),
        KeyType::None => out.extend_from_slice(b"<none>"),
        // ulogd prints nothing when inet_ntop fails; a non-address value is
        // the same case here.
        KeyType::IpAddr => {
            push_addr(out, v);
        }
        KeyType::String => match rec.bytes_of(v) {
            Some(b) => out.extend_from_slice(cstr(b)),
            None => {
                push_number(out, v);
            }
        },
        _ => {
            if !push_number(out, v) {
                if let Some(b) = rec.bytes_of(v) {
                    out.extend_from_slice(cstr(b));
                }
            }
        }
    }
}

impl Render for Oprint {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.fields = wildcard_fields(b.upstream);
        Ok(())
    }

    fn render(&mut self, rec: &Record, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(b"===>PACKET BOUNDARY\n");
        for f in &self.fields {
            let Some(v) = rec.get(f.slot) else {
                continue;
            };
            out.extend_from_slice(&f.name);
            out.push(b'=');
            push_value(out, rec, f.ty, v);
            out.push(b'\n');
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{temp_dir, text, Harness};
    use rulogd_plugin::{Span, Value};
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn every_valid_key_in_stack_order() {
        let dir = temp_dir("oprint");
        let file = dir.join("o.log");
        let mut h = Harness::new(
            REGISTRATION,
            &[("file", file.to_str().unwrap())],
            &[
                ("raw.pkt", KeyType::Raw),
                ("oob.prefix", KeyType::String),
                ("oob.family", KeyType::U8),
                ("raw.pktlen", KeyType::U32),
                ("ip.saddr", KeyType::IpAddr),
                ("ip.daddr", KeyType::IpAddr),
                ("tcp.syn", KeyType::Bool),
                ("x.i64", KeyType::I64),
                ("x.u64", KeyType::U64),
                ("x.none", KeyType::None),
                ("ip.saddr.bin", KeyType::RawStr),
                ("oob.uid", KeyType::U32),
                // A name exported twice is printed twice, both times with
                // the nearest producer's value.
                ("oob.prefix", KeyType::String),
            ],
        );
        h.rec.set_buf(bytes::Bytes::from_static(b"\x45\x00"));
        h.set("raw.pkt", Value::Raw(Span::new(0, 2)))
            .set("oob.prefix", text("PFX\0cut"))
            .set("oob.family", Value::U8(2))
            .set("raw.pktlen", Value::U32(84))
            .set("ip.saddr", Value::Ipv4(Ipv4Addr::new(192, 0, 2, 1)))
            .set(
                "ip.daddr",
                Value::Ipv6("2001:db8::7".parse::<Ipv6Addr>().unwrap()),
            )
            .set("tcp.syn", Value::Bool(true))
            .set("x.i64", Value::I64(-5))
            .set("x.u64", Value::U64(1 << 40))
            .set("x.none", Value::U8(1))
            .set("ip.saddr.bin", text("0xc0000201"));
        h.write();
        h.write();
        h.stop();
        let got = std::fs::read_to_string(&file).unwrap();
        let want = "===>PACKET BOUNDARY\nraw.pkt=default\noob.prefix=PFX\noob.family=2\n\
                    raw.pktlen=84\nip.saddr=192.0.2.1\nip.daddr=2001:db8::7\ntcp.syn=1\n\
                    x.i64=-5\nx.u64=1099511627776\nx.none=<none>\nip.saddr.bin=default\n\
                    oob.prefix=PFX\n===>PACKET BOUNDARY\n";
        assert_eq!(got, want);
        let _ = std::fs::remove_dir_all(dir);
    }
}
