//! Fuzzes the NFLOG receive-buffer walker and the record filling after it.
//!
//! Beyond "no panic" it checks two invariants: every span lies inside the
//! buffer, and a message parsed on its own decodes to the same packet as
//! when parsed in place (spans shifted by the message offset).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rulogd_netlink::nflog::{messages, parse_packet, Message, NflogPacket};
use rulogd_input::nflog::{fill_record, NKEYS};
use rulogd_plugin::{Record, Slot, Span};

fn shift(s: Span, by: u32) -> Span {
    Span::new((s.off - by) as usize, s.len as usize)
}

fn shifted(p: &NflogPacket, by: u32) -> NflogPacket {
    let mut q = *p;
    q.msg = shift(p.msg, by);
    q.payload = p.payload.map(|s| shift(s, by));
    q.prefix = p.prefix.map(|s| shift(s, by));
    q.hwheader = p.hwheader.map(|s| shift(s, by));
    q.ct = p.ct.map(|s| shift(s, by));
    if let (Some(h), Some(q)) = (p.hwaddr, q.hwaddr.as_mut()) {
        q.addr = shift(h.addr, by);
    }
    q
}

fuzz_target!(|data: &[u8]| {
    let slots: [Option<Slot>; NKEYS] = std::array::from_fn(|i| Some(i as Slot));
    let mut rec = Record::with_slots(NKEYS);
    rec.set_buf(Bytes::copy_from_slice(data));
    for m in messages(data) {
        let Ok(Message::Packet(p)) = m else { continue };
        let spans = [
            p.payload,
            p.prefix,
            p.hwheader,
            p.ct,
            p.hwaddr.map(|h| h.addr),
        ];
        for s in spans.into_iter().flatten().chain([p.msg]) {
            // Slicing panics if a span leaves the buffer.
            let _ = &data[s.off as usize..][..s.len as usize];
        }
        let msg = &data[p.msg.off as usize..][..p.msg.len as usize];
        let alone = parse_packet(msg).expect("parsed in place, so parses alone");
        assert_eq!(alone, shifted(&p, p.msg.off));
        fill_record(&mut rec, &slots, &p, 0, &mut || (0, 0));
        for i in 0..NKEYS as Slot {
            if let Some(v) = rec.get(i) {
                let _ = rec.bytes_of(v);
            }
        }
        rec.clear();
    }
});
