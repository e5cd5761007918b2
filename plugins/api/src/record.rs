//! The record: a slot array plus a validity bitset, reused across events.

use crate::value::{Span, Value};
use bytes::Bytes;

/// The index of a key's value in a [`Record`], fixed when the stack is built.
pub type Slot = u32;

/// One event travelling down a stack.
///
/// Slots are addressed by the indices the stack builder handed out; clearing
/// resets validity bits only, so nothing is freed or allocated per event
/// except what values themselves own.
#[derive(Debug, Default)]
pub struct Record {
    buf: Bytes,
    slots: Vec<Value>,
    valid: Vec<u64>,
}

impl Record {
    /// A record with `n` slots.
    pub fn with_slots(n: usize) -> Self {
        Record {
            buf: Bytes::new(),
            slots: vec![Value::None; n],
            valid: vec![0; n.div_ceil(64)],
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the record has no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Grows the record to at least `n` slots.
    pub fn ensure_slots(&mut self, n: usize) {
        if self.slots.len() < n {
            self.slots.resize(n, Value::None);
            self.valid.resize(n.div_ceil(64), 0);
        }
    }

    /// Marks every slot invalid.
    pub fn clear(&mut self) {
        for w in &mut self.valid {
            *w = 0;
        }
    }

    /// Marks slots `start..start+len` invalid.
    #[inline]
    pub fn invalidate(&mut self, start: Slot, len: u32) {
        // A word at a time: the core calls this for every instance and
        // record, and BASE alone has some 60 output keys.
        let (mut i, end) = (start as usize, (start + len) as usize);
        while i < end {
            let (w, bit) = (i / 64, i % 64);
            let n = (end - i).min(64 - bit);
            // `n` ones starting at `bit` (n = 64 only when bit = 0).
            let mask = if n == 64 {
                !0
            } else {
                ((1u64 << n) - 1) << bit
            };
            self.valid[w] &= !mask;
            i += n;
        }
    }

    /// The receive buffer that spans in this record point into.
    pub fn buf(&self) -> &Bytes {
        &self.buf
    }

    /// Sets the receive buffer for the current event.
    pub fn set_buf(&mut self, buf: Bytes) {
        self.buf = buf;
    }

    /// Drops the reference to the receive buffer, so its memory can be reused.
    pub fn release_buf(&mut self) {
        self.buf = Bytes::new();
    }

    /// The bytes of a span; empty if the span is outside the buffer.
    #[inline]
    pub fn span(&self, s: Span) -> &[u8] {
        let (a, b) = (s.off as usize, s.off as usize + s.len as usize);
        self.buf.get(a..b).unwrap_or(&[])
    }

    /// Stores a valid value.
    // Always inlined: out of line, every call passes the 48-byte value
    // through memory, and the copy stalls on store forwarding (it was ~7 %
    // of the NFLOG → JSON path); inlined, the producer writes the slot.
    #[inline(always)]
    pub fn set(&mut self, slot: Slot, v: Value) {
        let i = slot as usize;
        self.slots[i] = v;
        *self.word_of(i) |= 1u64 << (i % 64);
    }

    /// The validity word of slot `i`, which the caller has just found in
    /// `slots`: then it exists (`valid` always has `slots.len()` bits, see
    /// `with_slots` and `ensure_slots`, the only places that size them), and
    /// the second bounds check, paid on every value set or read, is not.
    #[inline(always)]
    fn word_of(&mut self, i: usize) -> &mut u64 {
        debug_assert!(i / 64 < self.valid.len());
        // SAFETY: `i < slots.len()` (checked by the caller's indexing) and
        // `valid.len() == slots.len().div_ceil(64)`, so `i / 64` is in bounds.
        unsafe { self.valid.get_unchecked_mut(i / 64) }
    }

    /// Stores a value built in place by `make`, only if `slot` is bound:
    /// the value is written straight into the slot, where [`Record::set`]
    /// builds it on the stack and copies it (a store-forwarding stall per
    /// value on the hottest producers).
    #[inline(always)]
    pub fn put_opt(&mut self, slot: Option<Slot>, make: impl FnOnce() -> Value) {
        if let Some(slot) = slot {
            let i = slot as usize;
            let dst = &mut self.slots[i];
            // The variants that own a resource (a new one must be added here).
            if matches!(dst, Value::Shared(_) | Value::RawOwned(_)) {
                release(dst);
            }
            // SAFETY: `dst` is an initialised slot whose value owns no
            // resource now, so writing over it without a drop leaks nothing.
            unsafe { std::ptr::write(dst, make()) };
            *self.word_of(i) |= 1u64 << (i % 64);
        }
    }

    /// Stores a value only if `slot` is bound (`Some`).
    #[inline(always)]
    pub fn set_opt(&mut self, slot: Option<Slot>, v: Value) {
        if let Some(s) = slot {
            self.set(s, v);
        }
    }

    /// Whether a slot holds a value for this event.
    #[inline]
    pub fn is_valid(&self, slot: Slot) -> bool {
        let i = slot as usize;
        self.valid[i / 64] & (1u64 << (i % 64)) != 0
    }

    /// The validity bitset: slot `i` is valid when bit `i % 64` of word
    /// `i / 64` is set. Lets a consumer visit only the valid slots.
    #[inline]
    pub fn valid_words(&self) -> &[u64] {
        &self.valid
    }

    /// The value of a slot, if valid.
    #[inline]
    pub fn get(&self, slot: Slot) -> Option<&Value> {
        let i = slot as usize;
        let v = &self.slots[i];
        // SAFETY: `i < slots.len()` (indexed just above) and
        // `valid.len() == slots.len().div_ceil(64)`: see `word_of`.
        let w = unsafe { *self.valid.get_unchecked(i / 64) };
        (w & (1u64 << (i % 64)) != 0).then_some(v)
    }

    /// The value of an optional binding, if bound and valid.
    #[inline]
    pub fn get_opt(&self, slot: Option<Slot>) -> Option<&Value> {
        slot.and_then(|s| self.get(s))
    }

    /// An integer value widened to u64.
    #[inline]
    pub fn get_u64(&self, slot: Option<Slot>) -> Option<u64> {
        self.get_opt(slot).and_then(Value::as_u64)
    }

    /// The bytes of a string or raw value, wherever they live.
    pub fn get_bytes(&self, slot: Option<Slot>) -> Option<&[u8]> {
        match self.get_opt(slot)? {
            Value::StrSpan(s) | Value::Raw(s) => Some(self.span(*s)),
            Value::Str(s) => Some(s.as_bytes()),
            Value::Shared(s) | Value::RawOwned(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes of a string or raw value (by slot).
    #[inline]
    pub fn bytes_of<'a>(&'a self, v: &'a Value) -> Option<&'a [u8]> {
        match v {
            Value::StrSpan(s) | Value::Raw(s) => Some(self.span(*s)),
            Value::Str(s) => Some(s.as_bytes()),
            Value::Shared(s) | Value::RawOwned(s) => Some(s),
            _ => None,
        }
    }
}

/// Drops a shared value out of line, off `Record::put_opt`'s fast path.
#[cold]
#[inline(never)]
fn release(v: &mut Value) {
    *v = Value::None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_opt_writes_in_place_and_releases_a_shared_value() {
        let mut r = Record::with_slots(2);
        let shared: std::sync::Arc<[u8]> = std::sync::Arc::from(&b"eth0"[..]);
        r.set(0, Value::Shared(shared.clone()));
        assert_eq!(std::sync::Arc::strong_count(&shared), 2);
        r.put_opt(Some(0), || Value::U32(7));
        assert_eq!(std::sync::Arc::strong_count(&shared), 1, "released");
        assert_eq!(r.get_u64(Some(0)), Some(7));
        r.put_opt(None, || unreachable!("an unbound slot builds nothing"));
        assert!(!r.is_valid(1));
    }

    #[test]
    fn validity_is_per_slot_and_cleared() {
        let mut r = Record::with_slots(130);
        r.set(0, Value::U8(1));
        r.set(64, Value::U16(2));
        r.set(129, Value::U32(3));
        assert!(r.is_valid(0) && r.is_valid(64) && r.is_valid(129));
        assert!(!r.is_valid(1));
        r.invalidate(60, 70);
        assert!(r.is_valid(0) && !r.is_valid(64) && !r.is_valid(129));
        r.clear();
        assert!(r.get(0).is_none());
    }

    #[test]
    fn invalidate_clears_exactly_the_range() {
        // Every start and length over three words against a bit-by-bit model.
        for start in 0..150u32 {
            for len in 0..(192 - start).min(140) {
                let mut r = Record::with_slots(192);
                for i in 0..192 {
                    r.set(i, Value::U8(0));
                }
                r.invalidate(start, len);
                for i in 0..192 {
                    let want = !(start..start + len).contains(&i);
                    assert_eq!(r.is_valid(i), want, "start {start} len {len} slot {i}");
                }
            }
        }
    }

    #[test]
    fn span_outside_buffer_is_empty_not_a_panic() {
        let mut r = Record::with_slots(1);
        r.set_buf(Bytes::from_static(b"abc"));
        assert_eq!(r.span(Span::new(1, 2)), b"bc");
        assert_eq!(r.span(Span::new(2, 9)), b"");
    }
}
