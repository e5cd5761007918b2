//! The durable spool: an on-disk FIFO of batches behind the memory queue.
//!
//! A delivery with a spool ([`SpoolConfig`]) never holds an outage in
//! memory. Producers hand batches to the queue while the spool is empty and
//! the destination is there; when the queue is full or the destination is
//! away they append to the spool instead, and once anything is in it every
//! later batch goes there too, so the order of one producer's records is
//! kept. The writer thread ([`super::backlog_spool`]) delivers the queue
//! first, then the spool, and marks a spooled batch done (`commit`) only
//! after the destination took it. What is in the spool survives a crash or
//! a restart and is delivered first on the next start.
//!
//! On disk: `<dir>/<16 hex digits>.seg` segments of frames
//! `[len u32][crc32 u32][records u32][ends u32 × records][bytes]` (little
//! endian; `len` counts what follows the crc), rotated at [`SEGMENT_BYTES`],
//! and `<dir>/head` with the committed read position. Writes reach the
//! kernel at once (a killed process loses nothing) and the disk at least
//! every second (`sync`). A frame cut by a crash fails its checksum and is
//! cut off when the spool is opened again.

use super::batch::Batch;
#[cfg(test)]
pub(crate) use super::spool_frame::crc32;
use super::spool_frame::{encode, frame_at, frame_len, FRAME_HEAD};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where and how much a delivery may spool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Directory of this instance's spool (created, mode 0700).
    pub dir: PathBuf,
    /// Most bytes producers may put in the spool; beyond it `when_full`
    /// applies. The writer may exceed it by what the memory queue holds when
    /// it moves the queue to disk at the start of an outage.
    pub max_bytes: u64,
    /// Longest wait between reconnect attempts (the backoff starts at
    /// 100 ms and doubles up to it).
    pub retry_max: std::time::Duration,
}

/// A new segment is started once the current one is this large.
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
const HEAD_MAGIC: u64 = 0x726c_6f67_6473_706c;

/// A position in the spool: segment number and byte offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    seg: u64,
    off: u64,
}

/// One segment file: its number, where its live frames start (0, except
/// for a segment that a prepended one put behind the head) and its length.
#[derive(Debug)]
struct Seg {
    n: u64,
    start: u64,
    len: u64,
}

/// Number of the first segment of a fresh spool: the middle of the range,
/// so that `prepend` can always number a segment before the head.
const FIRST_SEG: u64 = 1 << 40;

/// The on-disk FIFO. Not thread-safe by itself: the delivery keeps it
/// behind a mutex shared by its producers and its writer.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    seg_bytes: u64,
    segs: VecDeque<Seg>,
    tail: Option<File>,
    reader: Option<(u64, File)>,
    head_file: File,
    /// Everything before it was delivered.
    head: Pos,
    /// The next frame `read_next` returns.
    read: Pos,
    /// Where the segment after a prepended one resumes (see `prepend`).
    resume: Option<Pos>,
    /// Bytes from `head` to the end.
    bytes: u64,
    /// Records from `head` to the end.
    records: u64,
    /// Records handed out by `read_next` but not committed.
    read_records: u64,
    dirty: bool,
}

fn seg_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016x}.seg"))
}

pub(crate) fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Spool {
    /// Opens (creating) the spool in `cfg.dir`, cutting off a frame a crash
    /// left half-written, and positions reading at the committed head.
    pub fn open(cfg: &SpoolConfig) -> io::Result<Spool> {
        Spool::open_segmented(cfg, SEGMENT_BYTES)
    }

    /// [`Spool::open`] with another segment size (tests rotate often).
    pub(crate) fn open_segmented(cfg: &SpoolConfig, seg_bytes: u64) -> io::Result<Spool> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.dir)?;
        let mut nums: Vec<u64> = fs::read_dir(&cfg.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let s = name.to_str()?.strip_suffix(".seg")?;
                (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok())?
            })
            .collect();
        nums.sort_unstable();
        let head_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(cfg.dir.join("head"))?;
        let (head, resume) = read_head(&head_file);
        let head = head.unwrap_or(Pos {
            seg: nums.first().copied().unwrap_or(FIRST_SEG),
            off: 0,
        });
        let mut segs = VecDeque::new();
        for &n in &nums {
            if n < head.seg {
                // Delivered before a crash that came ahead of its removal.
                let _ = fs::remove_file(seg_path(&cfg.dir, n));
                continue;
            }
            let start = match resume {
                Some(r) if r.seg == n && head.seg < n => r.off,
                _ if n == head.seg => head.off,
                _ => 0,
            };
            segs.push_back(Seg { n, start, len: 0 });
        }
        let mut s = Spool {
            dir: cfg.dir.clone(),
            max_bytes: cfg.max_bytes,
            seg_bytes,
            segs,
            tail: None,
            reader: None,
            head_file,
            head,
            read: head,
            resume: resume.filter(|r| r.seg > head.seg),
            bytes: 0,
            records: 0,
            read_records: 0,
            dirty: false,
        };
        s.scan()?;
        Ok(s)
    }

    /// Walks every frame from the head to learn the sizes, record counts and
    /// the true end; the last segment is cut after its last whole frame.
    fn scan(&mut self) -> io::Result<()> {
        let last = self.segs.len().saturating_sub(1);
        for i in 0..self.segs.len() {
            let n = self.segs[i].n;
            let path = seg_path(&self.dir, n);
            let mut f = File::open(&path)?;
            let size = f.metadata()?.len();
            let start = self.segs[i].start;
            let mut off = start;
            while off < size {
                match frame_at(&mut f, off, size, false)? {
                    Some((len, recs, _)) => {
                        self.records += u64::from(recs);
                        off += FRAME_HEAD + u64::from(len);
                    }
                    None => break,
                }
            }
            if off < size {
                if i == last {
                    log::warn!(
                        "spool {}: cutting a frame left incomplete at {}:{off}",
                        self.dir.display(),
                        path.display()
                    );
                    OpenOptions::new().write(true).open(&path)?.set_len(off)?;
                } else {
                    return Err(corrupt(format!(
                        "{}: damaged frame at byte {off}",
                        path.display()
                    )));
                }
            }
            self.segs[i].len = off;
            self.bytes += off - start;
        }
        if self.segs.is_empty() {
            self.head = Pos {
                seg: self.head.seg,
                off: 0,
            };
            self.read = self.head;
        }
        Ok(())
    }

    /// Bytes waiting (not yet committed).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records waiting (not yet committed).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Whether every spooled batch has been delivered and committed.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Whether `read_next` has a batch to return.
    pub fn has_unread(&self) -> bool {
        self.end() > self.read
    }

    /// Whether producers may add `batch` (the writer's spill ignores this).
    pub fn has_room(&self, batch: &Batch) -> bool {
        self.is_empty() || self.bytes + frame_len(batch) <= self.max_bytes
    }

    fn end(&self) -> Pos {
        match self.segs.back() {
            Some(s) => Pos {
                seg: s.n,
                off: s.len,
            },
            None => self.head,
        }
    }

    /// Appends records `from..` of `batch` as one frame.
    pub fn append(&mut self, batch: &Batch, from: usize) -> io::Result<()> {
        let n = batch.records().saturating_sub(from);
        if n == 0 {
            return Ok(());
        }
        let mut frame = Vec::with_capacity(12 + 4 * n + batch.bytes());
        encode(batch, from, &mut frame)?;
        let need_new = match self.segs.back() {
            None => true,
            Some(s) => s.len > 0 && s.len + frame.len() as u64 > self.seg_bytes,
        };
        if need_new {
            let n = self.segs.back().map_or(self.head.seg, |s| s.n + 1);
            if self.tail.is_some() {
                self.sync()?;
            }
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(seg_path(&self.dir, n))?;
            if self.segs.is_empty() {
                self.head = Pos { seg: n, off: 0 };
                self.read = self.head;
                self.write_head()?;
            }
            self.segs.push_back(Seg {
                n,
                start: 0,
                len: 0,
            });
            self.tail = Some(f);
        }
        if self.tail.is_none() {
            let s = self.segs.back().map_or(0, |s| s.n);
            self.tail = Some(
                OpenOptions::new()
                    .append(true)
                    .open(seg_path(&self.dir, s))?,
            );
        }
        let (Some(f), Some(seg)) = (self.tail.as_mut(), self.segs.back_mut()) else {
            return Err(io::ErrorKind::NotFound.into());
        };
        if let Err(e) = f.write_all(&frame) {
            // Leave no partial frame behind: later appends must stay readable.
            let _ = f.set_len(seg.len);
            return Err(e);
        }
        seg.len += frame.len() as u64;
        self.bytes += frame.len() as u64;
        self.records += n as u64;
        self.dirty = true;
        Ok(())
    }

    /// Reads the next frame into `batch` (cleared first). Returns false when
    /// everything has been read.
    pub fn read_next(&mut self, batch: &mut Batch) -> io::Result<bool> {
        batch.clear();
        if !self.has_unread() {
            return Ok(false);
        }
        let Some(i) = self.segs.iter().position(|s| s.n == self.read.seg) else {
            return Err(corrupt(format!("segment {} missing", self.read.seg)));
        };
        if self.read.off >= self.segs[i].len {
            // This segment is read to its end: go on with the next.
            let Some(next) = self.segs.get(i + 1) else {
                return Ok(false);
            };
            self.read = Pos {
                seg: next.n,
                off: next.start,
            };
            return self.read_next(batch);
        }
        let seg_len = self.segs[i].len;
        if self.reader.as_ref().map(|r| r.0) != Some(self.read.seg) {
            self.reader = Some((
                self.read.seg,
                File::open(seg_path(&self.dir, self.read.seg))?,
            ));
        }
        let Some((_, f)) = self.reader.as_mut() else {
            return Err(io::ErrorKind::NotFound.into());
        };
        let Some((len, recs, payload)) = frame_at(f, self.read.off, seg_len, true)? else {
            return Err(corrupt(format!(
                "segment {:016x}: damaged frame at byte {}",
                self.read.seg, self.read.off
            )));
        };
        let recs = recs as usize;
        let ends = &payload[4..4 + 4 * recs];
        let data = &payload[4 + 4 * recs..];
        let mut start = 0usize;
        for k in 0..recs {
            let end =
                u32::from_le_bytes(ends[4 * k..4 * k + 4].try_into().unwrap_or_default()) as usize;
            if end < start || end > data.len() {
                return Err(corrupt(format!(
                    "frame at {}: bad record end",
                    self.read.off
                )));
            }
            batch.buf().extend_from_slice(&data[start..end]);
            batch.commit();
            start = end;
        }
        self.read.off += FRAME_HEAD + u64::from(len);
        self.read_records += recs as u64;
        Ok(true)
    }

    /// Appends further whole frames to `batch` while it holds fewer than
    /// `max_bytes`: frames are the batches producers spilled, often a few
    /// records each, and a replay delivering them one by one pays a
    /// destination's per-batch cost (an SQL transaction) per frame. Stops
    /// quietly at a frame it cannot read: `read_next` reports it next.
    pub fn read_more(&mut self, batch: &mut Batch, max_bytes: usize) {
        let mut scratch = Batch::with_capacity(0);
        while batch.bytes() < max_bytes && self.has_unread() {
            match self.read_next(&mut scratch) {
                Ok(true) => {
                    for k in 0..scratch.records() {
                        batch.buf().extend_from_slice(scratch.record(k));
                        batch.commit();
                    }
                }
                Ok(false) | Err(_) => break,
            }
        }
    }

    /// Marks everything read so far as delivered.
    pub fn commit(&mut self) -> io::Result<()> {
        // Segments wholly before the read position are done with.
        while let Some(s) = self.segs.front() {
            if s.n >= self.read.seg {
                break;
            }
            let n = s.n;
            self.segs.pop_front();
            if self.reader.as_ref().is_some_and(|r| r.0 == n) {
                self.reader = None;
            }
            let _ = fs::remove_file(seg_path(&self.dir, n));
        }
        self.head = self.read;
        self.records = self.records.saturating_sub(self.read_records);
        self.read_records = 0;
        if let Some(s) = self.segs.front_mut() {
            if s.n == self.head.seg {
                s.start = self.head.off;
            }
        }
        if self.resume.is_some_and(|r| r.seg <= self.head.seg) {
            self.resume = None;
        }
        self.bytes = self.segs.iter().map(|s| s.len - s.start.min(s.len)).sum();
        if self.bytes == 0 {
            // Everything delivered: start afresh rather than let files grow.
            let next = self.segs.back().map_or(self.head.seg, |s| s.n + 1);
            for s in self.segs.drain(..) {
                let _ = fs::remove_file(seg_path(&self.dir, s.n));
            }
            self.tail = None;
            self.reader = None;
            self.records = 0;
            self.resume = None;
            self.head = Pos { seg: next, off: 0 };
            self.read = self.head;
        }
        self.write_head()
    }

    /// Skips a frame that cannot be read: the rest of its segment, or for
    /// the last segment everything from it on (cut off the file).
    pub fn skip_damaged(&mut self) -> io::Result<()> {
        let Some(i) = self.segs.iter().position(|s| s.n == self.read.seg) else {
            return Ok(());
        };
        match self.segs.get(i + 1) {
            Some(next) => {
                self.read = Pos {
                    seg: next.n,
                    off: next.start,
                };
            }
            None => {
                let cut = self.read.off;
                self.tail = None;
                OpenOptions::new()
                    .write(true)
                    .open(seg_path(&self.dir, self.read.seg))?
                    .set_len(cut)?;
                self.segs[i].len = cut;
            }
        }
        self.commit()
    }

    /// Forgets what was read but not committed: it is read again next.
    pub fn rewind(&mut self) {
        self.read = self.head;
        self.read_records = 0;
    }

    fn write_head(&mut self) -> io::Result<()> {
        let r = self.resume.unwrap_or_default();
        let words = [self.head.seg, self.head.off, r.seg, r.off];
        let mut raw = [0u8; 40];
        let mut sum = HEAD_MAGIC;
        for (i, w) in words.iter().enumerate() {
            raw[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
            sum ^= w.rotate_left(i as u32 * 8);
        }
        raw[32..].copy_from_slice(&sum.to_le_bytes());
        self.head_file.write_all_at(&raw, 0)?;
        self.dirty = true;
        Ok(())
    }

    /// Puts batches (each from its given record on) in front of everything
    /// spooled, in the order given: the writer's memory queue, which is older
    /// than what producers spooled while it was full. Nothing may be read
    /// and uncommitted. The frames go to a new segment numbered before the
    /// head; the head file remembers where the old head segment resumes.
    pub fn prepend(&mut self, batches: &[(&Batch, usize)]) -> io::Result<()> {
        if self.is_empty() {
            for (b, from) in batches {
                self.append(b, *from)?;
            }
            return Ok(());
        }
        self.rewind();
        let Some(first) = self.segs.front() else {
            return Err(io::ErrorKind::NotFound.into());
        };
        let Some(m) = first.n.checked_sub(1) else {
            return Err(corrupt("no segment number left to prepend".into()));
        };
        let mut frames = Vec::new();
        let mut recs = 0u64;
        for (b, from) in batches {
            recs += b.records().saturating_sub(*from) as u64;
            encode(b, *from, &mut frames)?;
        }
        if frames.is_empty() {
            return Ok(());
        }
        let path = seg_path(&self.dir, m);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(&frames)?;
        // On disk before the head points at it: a crash in between leaves
        // the new segment behind the head, where `open` deletes it.
        f.sync_data()?;
        self.resume = Some(self.head);
        self.segs.push_front(Seg {
            n: m,
            start: 0,
            len: frames.len() as u64,
        });
        self.head = Pos { seg: m, off: 0 };
        self.read = self.head;
        self.bytes += frames.len() as u64;
        self.records += recs;
        self.write_head()?;
        self.head_file.sync_data()
    }

    /// Pushes appended frames and the head position to the disk.
    pub fn sync(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(f) = self.tail.as_ref() {
            f.sync_data()?;
        }
        self.head_file.sync_data()?;
        self.dirty = false;
        Ok(())
    }
}

/// The committed head and, while a prepended segment is being read, where
/// the segment after it resumes. `None` when missing or damaged.
fn read_head(f: &File) -> (Option<Pos>, Option<Pos>) {
    let mut raw = [0u8; 40];
    if f.read_exact_at(&mut raw, 0).is_err() {
        return (None, None);
    }
    let w = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    let mut sum = HEAD_MAGIC;
    for i in 0..4 {
        sum ^= w(i).rotate_left(i as u32 * 8);
    }
    if sum != w(4) {
        return (None, None);
    }
    let head = Pos {
        seg: w(0),
        off: w(1),
    };
    let resume = Pos {
        seg: w(2),
        off: w(3),
    };
    (Some(head), (resume.seg > head.seg).then_some(resume))
}

#[cfg(test)]
mod tests;
