//! Fuzzes the nfacct receive-buffer walker and the NFACCT record filling.
//!
//! Beyond "no panic": spans lie inside the buffer, and a message parsed on
//! its own decodes to the same object as in place (spans shifted).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rulogd_netlink::nfacct::{messages, parse_object, Message};
use rulogd_netlink::NlHeader;
use rulogd_input::nfacct::{fill_record, NKEYS};
use rulogd_plugin::{Record, Slot, Span};

fuzz_target!(|data: &[u8]| {
    let slots: [Option<Slot>; NKEYS] = std::array::from_fn(|i| Some(i as Slot));
    let mut rec = Record::with_slots(NKEYS);
    rec.set_buf(Bytes::copy_from_slice(data));
    let mut pos = 0;
    for m in messages(data) {
        let Ok(h) = NlHeader::parse(data, pos) else {
            break;
        };
        pos = h.next();
        let Ok((Message::Object(o), _)) = m else {
            continue;
        };
        for s in o.name.into_iter().chain([o.attrs]) {
            let _ = &data[s.off as usize..][..s.len as usize];
        }
        let mut alone = parse_object(&data[h.offset..h.end()]).expect("parses alone");
        alone.attrs = Span::new(
            alone.attrs.off as usize + h.offset,
            alone.attrs.len as usize,
        );
        alone.name = alone
            .name
            .map(|n| Span::new(n.off as usize + h.offset, n.len as usize));
        assert_eq!(alone, o);
        fill_record(&mut rec, &slots, &o, Some((1, 2)));
        for i in 0..NKEYS as Slot {
            if let Some(v) = rec.get(i) {
                let _ = rec.bytes_of(v);
            }
        }
        rec.clear();
    }
});
