//! Fuzzes the ctnetlink receive-buffer walker and the NFCT record filling.
//!
//! Beyond "no panic": every entry's attribute span lies inside the buffer,
//! and a message parsed on its own decodes to the same entry as in place
//! (its span shifted by the message offset).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rulogd_netlink::conntrack::{messages, parse_conntrack, Message};
use rulogd_netlink::NlHeader;
use rulogd_input::nfct::{fill_record, FlowRec, NKEYS};
use rulogd_plugin::{Record, Slot, Span};

fuzz_target!(|data: &[u8]| {
    let slots: [Option<Slot>; NKEYS] = std::array::from_fn(|i| Some(i as Slot));
    let mut rec = Record::with_slots(NKEYS);
    rec.set_buf(Bytes::copy_from_slice(data));
    let mut pos = 0;
    for m in messages(data) {
        // The walker visits messages in order; find this one's offset.
        let h = match NlHeader::parse(data, pos) {
            Ok(h) => h,
            Err(_) => break,
        };
        pos = h.next();
        let Ok((Message::Entry(ct), _)) = m else {
            continue;
        };
        let s = ct.attrs;
        let _ = &data[s.off as usize..][..s.len as usize];
        let msg = &data[h.offset..h.end()];
        let mut alone = parse_conntrack(msg).expect("parsed in place, so parses alone");
        alone.attrs = Span::new(
            alone.attrs.off as usize + h.offset,
            alone.attrs.len as usize,
        );
        assert_eq!(alone, ct);
        let mut f = FlowRec::of(&ct);
        f.start = ct.start_ns.map(|n| ((n / 1_000_000_000) as u32, 0));
        fill_record(&mut rec, &slots, &f, ct.event);
        for i in 0..NKEYS as Slot {
            if let Some(v) = rec.get(i) {
                let _ = rec.bytes_of(v);
            }
        }
        rec.clear();
    }
});
