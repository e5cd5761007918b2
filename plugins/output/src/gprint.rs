//! GPRINT: one `name=value,…` line per record, as ulogd 2.0.9's
//! `ulogd_output_GPRINT` writes it.
//!
//! With `timestamp=1` the line starts with `timestamp=YYYY/MM/DD-HH:MM:SS,`
//! in local time at the moment of writing (not the packet's time). Then
//! every valid upstream key follows in stack order, duplicates included:
//! strings as they are, integers and booleans in decimal, addresses as
//! `inet_ntop` writes them; raw data and keys of other types are left out.
//! The last comma is removed. Nothing is escaped.

use crate::rendered::{Render, Rendered};
use crate::text::{
    cstr, file_producer, local_tm, now, push_addr, push_number, wildcard_fields, Field,
};
use rulogd_plugin::{Binding, BuildCtx, BuildError, KeyType, OptionDef, Output, Record};

static OPTIONS: [OptionDef; 3] = [
    OptionDef::str("file", "/var/log/ulogd_gprint.log", "Output file"),
    OptionDef::int(
        "sync",
        "0",
        "Hand every line to the writer at once instead of in 64 KiB batches",
    )
    .flag(),
    OptionDef::int(
        "timestamp",
        "0",
        "Start each line with timestamp=YYYY/MM/DD-HH:MM:SS (local time of writing)",
    )
    .flag(),
];

rulogd_plugin::plugin! {
    Output "GPRINT" wildcard (build): "Writes every key of a record as name=value pairs on one line";
    options &OPTIONS;
}

/// One GPRINT instance in one stack.
pub struct Gprint {
    timestamp: bool,
    fields: Vec<Field>,
    /// The last second rendered and its `timestamp=…,` text.
    stamp: Option<(i64, [u8; 30])>,
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    Ok(Rendered::boxed(
        file_producer(ctx, "GPRINT")?,
        Gprint {
            timestamp: ctx.options.int("timestamp") != 0,
            fields: Vec::new(),
            stamp: None,
        },
    ))
}

/// `timestamp=YYYY/MM/DD-HH:MM:SS,` for `secs` in local time.
fn stamp(secs: i64) -> [u8; 30] {
    let tm = local_tm(secs);
    let mut b = *b"timestamp=0000/00/00-00:00:00,";
    let mut put = |at: usize, width: usize, v: i64| {
        let mut v = v.max(0);
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    // `%.4u` pads to four digits; later years do not fit the fixed layout
    // and are clipped, which no clock reaches before the year 10000.
    put(10, 4, 1900 + i64::from(tm.tm_year));
    put(15, 2, i64::from(tm.tm_mon) + 1);
    put(18, 2, tm.tm_mday.into());
    put(21, 2, tm.tm_hour.into());
    put(24, 2, tm.tm_min.into());
    put(27, 2, tm.tm_sec.into());
    b
}

impl Render for Gprint {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.fields = wildcard_fields(b.upstream);
        Ok(())
    }

    fn render(&mut self, rec: &Record, out: &mut Vec<u8>) -> bool {
        let ts = if self.timestamp {
            let secs = now().0;
            match self.stamp {
                Some((s, t)) if s == secs => Some(t),
                _ => {
                    let t = stamp(secs);
                    self.stamp = Some((secs, t));
                    Some(t)
                }
            }
        } else {
            None
        };
        let start = out.len();
        if let Some(t) = ts {
            out.extend_from_slice(&t);
        }
        for f in &self.fields {
            let Some(v) = rec.get(f.slot) else {
                continue;
            };
            let mark = out.len();
            out.extend_from_slice(&f.name);
            out.push(b'=');
            let printed = match f.ty {
                KeyType::String => match rec.bytes_of(v) {
                    Some(b) => {
                        out.extend_from_slice(cstr(b));
                        true
                    }
                    None => push_number(out, v),
                },
                t if t.is_integer() => push_number(out, v),
                KeyType::IpAddr => push_addr(out, v),
                // Raw data and untyped keys: ulogd does not know how to print them.
                _ => false,
            };
            if printed {
                out.push(b',');
            } else {
                out.truncate(mark);
            }
        }
        if out.len() > start {
            // The comma after the last pair.
            out.pop();
        }
        out.push(b'\n');
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{temp_dir, text, Harness};
    use rulogd_plugin::{Span, Value};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn keys() -> Vec<(&'static str, KeyType)> {
        vec![
            ("raw.pkt", KeyType::Raw),
            ("raw.pktlen", KeyType::U32),
            ("oob.prefix", KeyType::String),
            ("ip.saddr", KeyType::IpAddr),
            ("ip.daddr", KeyType::IpAddr),
            ("tcp.syn", KeyType::Bool),
            ("x.i64", KeyType::I64),
            ("ip.saddr.bin", KeyType::RawStr),
            ("oob.uid", KeyType::U32),
            ("oob.prefix", KeyType::String),
        ]
    }

    #[test]
    fn one_line_per_record_last_comma_removed() {
        let dir = temp_dir("gprint");
        let file = dir.join("g.log");
        let mut h = Harness::new(REGISTRATION, &[("file", file.to_str().unwrap())], &keys());
        h.rec.set_buf(bytes::Bytes::from_static(b"\x45\x00"));
        h.set("raw.pkt", Value::Raw(Span::new(0, 2)))
            .set("raw.pktlen", Value::U32(40))
            .set("oob.prefix", text("MY,PFX=1"))
            .set("ip.saddr", Value::Ipv4(Ipv4Addr::new(192, 0, 2, 1)))
            .set(
                "ip.daddr",
                Value::Ipv6("::ffff:1.2.3.4".parse::<Ipv6Addr>().unwrap()),
            )
            .set("tcp.syn", Value::Bool(false))
            .set("x.i64", Value::I64(-7))
            .set("ip.saddr.bin", text("0x1"));
        h.write();
        // Nothing valid: an empty line.
        h.write();
        h.stop();
        let got = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            got,
            "raw.pktlen=40,oob.prefix=MY,PFX=1,ip.saddr=192.0.2.1,ip.daddr=::ffff:1.2.3.4,\
             tcp.syn=0,x.i64=-7,oob.prefix=MY,PFX=1\n\n"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn timestamp_is_local_time_of_writing() {
        let dir = temp_dir("gprint-ts");
        let file = dir.join("g.log");
        let mut h = Harness::new(
            REGISTRATION,
            &[("file", file.to_str().unwrap()), ("timestamp", "1")],
            &keys(),
        );
        let before = now().0;
        h.write();
        h.set("raw.pktlen", Value::U32(1));
        h.write();
        let after = now().0;
        h.stop();
        let got = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines.len(), 2);
        let ok = |l: &str, tail: &str| {
            (before..=after).any(|s| {
                let t = stamp(s);
                let t = std::str::from_utf8(&t).unwrap();
                l == format!("{}{tail}", &t[..t.len() - tail.is_empty() as usize])
            })
        };
        assert!(ok(lines[0], ""), "{}", lines[0]);
        assert!(ok(lines[1], "raw.pktlen=1"), "{}", lines[1]);
        assert_eq!(&stamp(0)[..10], b"timestamp=");
        let _ = std::fs::remove_dir_all(dir);
    }
}
