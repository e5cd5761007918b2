//! The destination a writer thread delivers batches to, behind one trait so
//! that JSON, SQL, Graphite and IPFIX share the queueing and retry logic.

use super::batch::Batch;
use super::stats::DeliveryStats;
use rulogd_plugin::BuildCtx;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A write that stopped part-way through a batch.
#[derive(Debug)]
pub struct SendError {
    /// Index of the first record that was not delivered completely; the
    /// writer resends from its start.
    pub next: usize,
    /// Why the write stopped.
    pub error: io::Error,
}

/// Where a writer thread sends records: a file, a socket, a database.
///
/// Only the writer thread calls these methods, so they may block.
pub trait Transport: Send {
    /// The destination, for log messages (`file /var/log/ulogd.json`).
    fn describe(&self) -> &str;
    /// Whether the destination is open or connected.
    fn is_open(&self) -> bool;
    /// Opens or connects; the writer calls it with backoff while it fails.
    fn open(&mut self) -> io::Result<()>;
    /// Writes records `from..` of `batch`; on failure says which record to resend from.
    fn send(&mut self, batch: &Batch, from: usize, stats: &DeliveryStats) -> Result<(), SendError>;
    /// Drops the connection or file after a failure; `open` starts afresh.
    fn close(&mut self);
    /// SIGHUP: moves to a fresh file or connection. The default closes and opens.
    fn reopen(&mut self) -> io::Result<()> {
        self.close();
        self.open()
    }
    /// Bounds how long one send may block from now on (shutdown uses it so a
    /// peer that stopped reading cannot hold the daemon past its deadline).
    fn limit_send_time(&mut self, _limit: Duration) {}
    /// Whether the destination was renamed or deleted under us (a rotation
    /// without SIGHUP), so the writer should [`Self::reopen`] it. Called
    /// before each batch; cheap.
    fn moved(&mut self) -> bool {
        false
    }
}

/// How often a file output compares its path with the file it has open.
const MOVED_CHECK: Duration = Duration::from_secs(1);

/// Prepares a file that instance `ctx.instance` of `plugin` writes at
/// `path` for the `-u` user: the file (if it is a regular file) is handed
/// to the user before the drop, so a reopen after SIGHUP can open it
/// again; its directory is checked after the drop, because a rotation
/// makes the reopen create a new file there.
pub fn prepare_reopen(ctx: &BuildCtx, plugin: &str, path: &Path) {
    if ctx.shared.env().owner.is_none() {
        return;
    }
    // /dev/stdout, a FIFO: nothing to hand over, nothing made on reopen.
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return;
    }
    ctx.shared.hand_over_later(path.to_path_buf());
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    ctx.shared.reopens_in(
        dir,
        format!(
            "{} ({plugin}) reopens {} after a rotation",
            ctx.instance,
            path.display()
        ),
    );
}

/// The device and inode of a file.
fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// Writes records `from..` of `batch` to a byte stream with as few calls as
/// the kernel allows, reporting how far it got when a call fails.
///
/// The second value of the error is how many bytes of record `next` were
/// written before the failure (a torn tail the caller may repair).
pub fn write_records<W: Write + ?Sized>(
    w: &mut W,
    batch: &Batch,
    from: usize,
) -> Result<(), (SendError, usize)> {
    let base = batch.start_of(from);
    let data = batch.bytes_from(from);
    let mut off = 0;
    while off < data.len() {
        match w.write(&data[off..]) {
            Ok(0) => {
                return Err(cut(batch, base, off, io::ErrorKind::WriteZero.into()));
            }
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(cut(batch, base, off, e)),
        }
    }
    Ok(())
}

fn cut(batch: &Batch, base: usize, off: usize, error: io::Error) -> (SendError, usize) {
    let next = batch.records_before(base + off);
    let torn = base + off - batch.start_of(next);
    (SendError { next, error }, torn)
}

/// Runs on every file a [`FileTransport`] opens, before anything is written
/// to it (PCAP writes its header into a file that is still empty).
pub type OpenHook = Box<dyn FnMut(&mut File) -> io::Result<()> + Send>;

/// A file opened for appending (ulogd's `fopen(file, "a")`), with O_CLOEXEC.
pub struct FileTransport {
    path: PathBuf,
    desc: String,
    file: Option<File>,
    on_open: Option<OpenHook>,
    /// Device and inode of `file`, to notice the path pointing elsewhere.
    id: Option<(u64, u64)>,
    checked: Instant,
}

impl FileTransport {
    /// A transport for `path`; nothing is opened yet.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        FileTransport {
            desc: format!("file {}", path.display()),
            path,
            file: None,
            on_open: None,
            id: None,
            checked: Instant::now(),
        }
    }

    /// Runs `hook` on each file opened from now on (at start, after a
    /// failure, on SIGHUP); if it fails, the open fails (a reopen keeps the
    /// old file).
    pub fn on_open(mut self, hook: OpenHook) -> Self {
        self.on_open = Some(hook);
        self
    }

    /// Opens the file now, so that a build fails when it cannot be opened.
    pub fn opened(path: impl Into<PathBuf>) -> io::Result<Self> {
        let mut t = FileTransport::new(path);
        t.open()?;
        Ok(t)
    }

    fn open_file(&mut self) -> io::Result<File> {
        // std opens with O_CLOEXEC and mode 0666 & ~umask, as fopen does.
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)?;
        if let Some(hook) = self.on_open.as_mut() {
            hook(&mut f)?;
        }
        Ok(f)
    }
}

impl Transport for FileTransport {
    fn describe(&self) -> &str {
        &self.desc
    }

    fn is_open(&self) -> bool {
        self.file.is_some()
    }

    fn open(&mut self) -> io::Result<()> {
        let f = self.open_file()?;
        self.set_file(f);
        Ok(())
    }

    fn send(&mut self, batch: &Batch, from: usize, _: &DeliveryStats) -> Result<(), SendError> {
        let Some(file) = self.file.as_mut() else {
            return Err(SendError {
                next: from,
                error: io::Error::new(io::ErrorKind::NotConnected, "file not open"),
            });
        };
        write_records(file, batch, from).map_err(|(err, torn)| {
            if torn > 0 {
                // A short write (disk full) left part of a line in the file; cut
                // it off so the resent line does not follow a fragment. Best
                // effort: if it fails the line is torn, as it would be in ulogd.
                if let Ok(meta) = file.metadata() {
                    let _ = file.set_len(meta.len().saturating_sub(torn as u64));
                }
            }
            err
        })
    }

    fn close(&mut self) {
        self.file = None;
    }

    fn reopen(&mut self) -> io::Result<()> {
        // Like ulogd: open the new file first and keep the old one on failure,
        // so a failed reopen does not lose lines.
        let f = self.open_file()?;
        self.set_file(f);
        Ok(())
    }

    fn moved(&mut self) -> bool {
        if self.file.is_none() || self.checked.elapsed() < MOVED_CHECK {
            return false;
        }
        self.checked = Instant::now();
        match std::fs::metadata(&self.path) {
            Ok(m) => self.id.is_some_and(|id| id != file_id(&m)),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        }
    }
}

impl FileTransport {
    fn set_file(&mut self, f: File) {
        self.id = f.metadata().ok().map(|m| file_id(&m));
        self.checked = Instant::now();
        self.file = Some(f);
    }
}
