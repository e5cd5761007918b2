//! Small pieces every input repeats: binding its key table, and pointing
//! the record at the chunk its values are spans of.

use bytes::Bytes;
use rulogd_plugin::{Binding, Counter, Record, Slot};

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

/// Warns, the first time only (`warned` remembers), that a datagram was
/// longer than `bufsize` and lost its tail.
pub(crate) fn warn_truncated(warned: &mut bool, name: &str, plugin: &str, bufsize: usize) {
    if !*warned {
        *warned = true;
        log::warn!("{name} ({plugin}): datagram larger than bufsize {bufsize}; raise bufsize");
    }
}

/// Counts a message that could not be parsed in `malformed`, and warns
/// about the first one (`warned` remembers).
pub(crate) fn note_malformed(
    malformed: &Counter,
    warned: &mut bool,
    name: &str,
    plugin: &str,
    e: &dyn std::fmt::Display,
) {
    malformed.inc();
    if !*warned {
        *warned = true;
        log::warn!("{name} ({plugin}): skipping malformed message: {e}");
    }
}
