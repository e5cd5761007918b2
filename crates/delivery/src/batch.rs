//! A batch: rendered records back to back in one buffer, plus where each ends.
//!
//! Outputs render straight into [`Batch::buf`] and then [`Batch::commit`] the
//! record; the writer thread needs the boundaries to send one datagram per
//! record and to resend a stream from the start of the record a failure cut.

/// Rendered records waiting to be written, reused across hand-overs.
#[derive(Debug, Default)]
pub struct Batch {
    buf: Vec<u8>,
    ends: Vec<u32>,
}

impl Batch {
    /// An empty batch with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Batch {
            buf: Vec::with_capacity(bytes),
            // A typical JSON line is a few hundred bytes.
            ends: Vec::with_capacity(bytes / 256 + 1),
        }
    }

    /// The byte buffer; append the record being rendered, then [`commit`](Self::commit).
    #[inline]
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Marks everything appended since the last commit as one record.
    #[inline]
    pub fn commit(&mut self) {
        // Batches are handed over at tens of KiB, so u32 offsets cannot overflow
        // unless one record alone exceeds 4 GiB.
        self.ends.push(self.buf.len() as u32);
    }

    /// Discards bytes appended since the last commit.
    #[inline]
    pub fn rollback(&mut self) {
        let keep = self.ends.last().map_or(0, |&e| e as usize);
        self.buf.truncate(keep);
    }

    /// Number of committed records.
    #[inline]
    pub fn records(&self) -> usize {
        self.ends.len()
    }

    /// Number of committed bytes.
    #[inline]
    pub fn bytes(&self) -> usize {
        self.ends.last().map_or(0, |&e| e as usize)
    }

    /// Whether no record is committed.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Byte offset where record `i` starts (`bytes()` when `i == records()`).
    #[inline]
    pub fn start_of(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize
        }
    }

    /// The bytes of record `i`.
    #[inline]
    pub fn record(&self, i: usize) -> &[u8] {
        &self.buf[self.start_of(i)..self.ends[i] as usize]
    }

    /// The committed bytes from the start of record `i` to the end.
    #[inline]
    pub fn bytes_from(&self, i: usize) -> &[u8] {
        &self.buf[self.start_of(i)..self.bytes()]
    }

    /// How many records lie entirely before byte offset `off`.
    pub fn records_before(&self, off: usize) -> usize {
        self.ends.partition_point(|&e| e as usize <= off)
    }

    /// Empties the batch, keeping its memory.
    #[inline]
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_boundaries() {
        let mut b = Batch::with_capacity(64);
        b.buf().extend_from_slice(b"one\n");
        b.commit();
        b.buf().extend_from_slice(b"two\n");
        b.commit();
        b.buf().extend_from_slice(b"half");
        b.rollback();
        assert_eq!(b.records(), 2);
        assert_eq!(b.bytes(), 8);
        assert_eq!(b.record(1), b"two\n");
        assert_eq!(b.bytes_from(1), b"two\n");
        assert_eq!(b.records_before(0), 0);
        assert_eq!(b.records_before(3), 0);
        assert_eq!(b.records_before(4), 1);
        assert_eq!(b.records_before(8), 2);
        b.clear();
        assert!(b.is_empty() && b.bytes() == 0);
    }
}
