//! Fuzzes the UNIXSOCK stream parser and the record filling after it.
//!
//! The first input byte picks how the rest is cut into reads; the stream is
//! then parsed the way the plugin does (a buffer that receives each piece,
//! complete messages taken off its front) and also in one go. Beyond "no
//! panic" it checks that both give the same messages and the same error at
//! the same stream offset, and that every span lies inside its message.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rulogd_input::unixsock::frame::{decode, frames, Decoded, FrameError};
use rulogd_input::unixsock::{fill_record, NKEYS};
use rulogd_plugin::{Record, Slot, Span};

#[derive(Debug, PartialEq)]
enum Ev {
    Msg(usize, Decoded),
    Bad(usize, FrameError),
}

fn shift(d: &Decoded, by: usize) -> Decoded {
    let s = |x: Span| Span::new(x.off as usize + by, x.len as usize);
    let o = |x: Option<Span>| x.map(s);
    Decoded {
        payload: s(d.payload),
        prefix: o(d.prefix),
        oob_in: o(d.oob_in),
        oob_out: o(d.oob_out),
        user_name: o(d.user_name),
        os_name: o(d.os_name),
        os_rel: o(d.os_rel),
        os_vers: o(d.os_vers),
        app_name: o(d.app_name),
        ..*d
    }
}

/// Parses the complete messages of `buf`, whose first byte is stream byte
/// `base`. Returns the bytes consumed and whether an error ended the stream.
fn walk(buf: &[u8], base: usize, out: &mut Vec<Ev>) -> (usize, bool) {
    let mut it = frames(buf);
    while let Some(f) = it.next() {
        let f = match f {
            Ok(f) => f,
            Err(e) => {
                out.push(Ev::Bad(base + it.consumed(), e));
                return (it.consumed(), true);
            }
        };
        assert!(f.end() <= buf.len());
        match decode(buf, &f) {
            Ok(d) => {
                let spans = [d.payload]
                    .into_iter()
                    .chain(d.prefix)
                    .chain(d.oob_in)
                    .chain(d.oob_out)
                    .chain(d.user_name)
                    .chain(d.os_name)
                    .chain(d.os_rel)
                    .chain(d.os_vers)
                    .chain(d.app_name);
                for s in spans {
                    assert!(s.off as usize >= f.off && (s.off + s.len) as usize <= f.end());
                }
                out.push(Ev::Msg(base + f.off, shift(&d, base)));
            }
            Err(e) => {
                out.push(Ev::Bad(base + f.off, e));
                return (it.consumed(), true);
            }
        }
    }
    (it.consumed(), false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut whole = Vec::new();
    walk(stream, 0, &mut whole);

    let mut pieces = Vec::new();
    let mut buf = Vec::new();
    let mut base = 0;
    let mut rest = stream;
    let mut step = seed as usize;
    while !rest.is_empty() {
        step = (step * 31 + 7) % 97 + 1;
        let (piece, tail) = rest.split_at(step.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(piece);
        let (used, stopped) = walk(&buf, base, &mut pieces);
        if stopped {
            break;
        }
        buf.drain(..used);
        base += used;
    }
    assert_eq!(whole, pieces);

    let slots: [Option<Slot>; NKEYS] = std::array::from_fn(|i| Some(i as Slot));
    let mut rec = Record::with_slots(NKEYS);
    rec.set_buf(Bytes::copy_from_slice(stream));
    for ev in &whole {
        if let Ev::Msg(_, d) = ev {
            fill_record(&mut rec, &slots, d);
            for i in 0..NKEYS as Slot {
                if let Some(v) = rec.get(i) {
                    let _ = rec.bytes_of(v);
                }
            }
            rec.clear();
        }
    }
});
