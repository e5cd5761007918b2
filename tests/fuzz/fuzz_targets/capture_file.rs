//! Fuzzes the capture-file parser and the link-layer decoder.
//!
//! Beyond "no panic": every packet's bytes lie inside the file, and parsing
//! the file fed in small pieces (as the CAPTURE input reads it, chunk by
//! chunk) gives the same packets as parsing it whole.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rulogd_capture::{decode, file::parse_all, Next, Parser};

fuzz_target!(|data: &[u8]| {
    let whole = parse_all(data);
    if let Ok(pkts) = &whole {
        for p in pkts {
            let frame = &data[p.data_off..p.data_off + p.caplen as usize];
            if let Some(f) = decode(p.linktype, frame) {
                assert!(f.l3 <= frame.len() || frame.is_empty());
                for (o, l) in f.mac.into_iter().chain(f.saddr) {
                    assert!(o + l <= frame.len());
                }
            }
        }
    }
    // The same file in pieces of 7 bytes and more.
    let Ok(Some((mut parser, mut at))) = Parser::start(data) else {
        return;
    };
    let mut got = Vec::new();
    let mut end = (at + 7).min(data.len());
    loop {
        match parser.next(&data[at..end]) {
            Ok(Next::Packet { mut pkt, consumed }) => {
                pkt.data_off += at;
                got.push(pkt);
                at += consumed;
            }
            Ok(Next::Skip { consumed }) => at += consumed,
            Ok(Next::NeedMore { .. }) if end < data.len() => end = (end + 7).min(data.len()),
            Ok(Next::NeedMore { .. }) => break,
            Err(_) => {
                assert!(whole.is_err(), "chunked parsing failed where whole parsing did not");
                return;
            }
        }
        if at == data.len() {
            break;
        }
    }
    if let Ok(pkts) = whole {
        assert_eq!(got, pkts);
    }
});
