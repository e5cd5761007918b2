//! The spool's frames: `[len u32][crc32 u32][records u32][ends u32 ×
//! records][bytes]`, little endian, `len` counting what follows the crc.
//! One batch (or the rest of one) is one frame; a frame cut by a crash
//! fails its checksum.

use super::batch::Batch;
use super::spool::corrupt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// Frame header: length and checksum.
pub(crate) const FRAME_HEAD: u64 = 8;
/// Sanity cap on one frame (a batch is a few hundred KiB).
const FRAME_MAX: u32 = 1 << 30;

/// Appends records `from..` of `b` as one frame to `out`.
pub(crate) fn encode(b: &Batch, from: usize, out: &mut Vec<u8>) -> io::Result<()> {
    let n = b.records().saturating_sub(from);
    if n == 0 {
        return Ok(());
    }
    let base = b.start_of(from);
    let data = b.bytes_from(from);
    let at = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for i in from..b.records() {
        let end = b.start_of(i + 1) - base;
        out.extend_from_slice(&(end as u32).to_le_bytes());
    }
    out.extend_from_slice(data);
    let len = (out.len() - at) as u64 - FRAME_HEAD;
    if len > u64::from(FRAME_MAX) {
        out.truncate(at);
        return Err(corrupt(format!("batch of {len} bytes is too large")));
    }
    let crc = crc32(&out[at + 8..]);
    out[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Bytes a batch takes as a frame.
pub(crate) fn frame_len(b: &Batch) -> u64 {
    FRAME_HEAD + 4 + 4 * b.records() as u64 + b.bytes() as u64
}

/// Reads and checks the frame at `off`: `(payload len, records, payload)`,
/// the payload only when `want` (else empty). `None` when the frame is cut
/// or damaged.
pub(crate) fn frame_at(
    f: &mut File,
    off: u64,
    size: u64,
    want: bool,
) -> io::Result<Option<(u32, u32, Vec<u8>)>> {
    if off + FRAME_HEAD + 4 > size {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(off))?;
    let mut head = [0u8; 12];
    f.read_exact(&mut head)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let recs = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if !(4..=FRAME_MAX).contains(&len)
        || off + FRAME_HEAD + u64::from(len) > size
        || u64::from(recs) * 4 + 4 > u64::from(len)
    {
        return Ok(None);
    }
    // The checksum is always verified, so a scan finds a torn tail.
    let mut payload = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(off + FRAME_HEAD))?;
    f.read_exact(&mut payload)?;
    if crc32(&payload) != crc {
        return Ok(None);
    }
    if !want {
        payload = Vec::new();
    }
    Ok(Some((len, recs, payload)))
}

/// CRC-32 (IEEE, reflected): spools written by older builds still verify.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}
