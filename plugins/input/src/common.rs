//! Small pieces every input repeats: binding its key table, and pointing
//! the record at the chunk its values are spans of.

use bytes::Bytes;
use rulogd_plugin::{Binding, Record, Slot};

/// Binds each slot of an input's key table to its output key (`None` when
/// no stack uses the key, so the input need not set it).
pub(crate) fn bind_slots(slots: &mut [Option<Slot>], b: &Binding) {
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot = b.output_if_active(i);
    }
}

/// Makes `rec` share `chunk`, unless it already does: the records of one
/// chunk then take one reference to it, not one each.
#[inline]
pub(crate) fn share_chunk(rec: &mut Record, chunk: &Bytes) {
    let buf = rec.buf();
    if buf.as_ptr() != chunk.as_ptr() || buf.len() != chunk.len() {
        rec.set_buf(chunk.clone());
    }
}
