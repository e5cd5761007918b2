//! The daemon log, in ulogd's format and with its levels:
//! 1 debug, 3 info, 5 notice (default), 7 error, 8 fatal.
//!
//! `logfile` may be a path (appended to, reopened on SIGHUP), `stdout`,
//! `syslog`, or absent (stderr), exactly as in ulogd2.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

enum Sink {
    Stderr,
    Stdout,
    File { path: String, file: File },
    Syslog,
}

/// The global logger.
pub struct Logger {
    sink: Mutex<Sink>,
    threshold: AtomicU8,
    mirror_stderr: AtomicBool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Maps a `log` level onto ulogd's numbers.
pub fn ulogd_level(l: log::Level) -> u8 {
    match l {
        log::Level::Error => 7,
        log::Level::Warn => 5,
        log::Level::Info => 3,
        log::Level::Debug | log::Level::Trace => 1,
    }
}

fn ctime_now() -> String {
    let mut buf = [0u8; 64];
    // SAFETY: time/localtime_r/strftime on locals with a bounded buffer.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        let n = libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%a %b %e %H:%M:%S %Y".as_ptr(),
            &tm,
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        ulogd_level(m.level()) >= self.threshold.load(Ordering::Relaxed)
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let lvl = ulogd_level(r.level());
        let file = r
            .file()
            .map(|f| f.rsplit('/').next().unwrap_or(f))
            .unwrap_or("rulogd");
        let msg = format!("{}", r.args());
        let line = format!(
            "{} <{lvl}> {file}:{} {msg}\n",
            ctime_now(),
            r.line().unwrap_or(0)
        );
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *sink {
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Sink::Stdout => {
                let _ = std::io::stdout().write_all(line.as_bytes());
            }
            Sink::File { file, .. } => {
                let _ = file.write_all(line.as_bytes());
            }
            Sink::Syslog => {
                let prio = match lvl {
                    7 => libc::LOG_ERR,
                    5 => libc::LOG_NOTICE,
                    3 => libc::LOG_INFO,
                    _ => libc::LOG_DEBUG,
                };
                if let Ok(c) = CString::new(msg.replace('\0', " ")) {
                    // SAFETY: constant format string, NUL-free argument.
                    unsafe { libc::syslog(prio, c"%s".as_ptr(), c.as_ptr()) };
                }
            }
        }
        if self.mirror_stderr.load(Ordering::Relaxed) && !matches!(*sink, Sink::Stderr) {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger writing to stderr at `threshold`.
pub fn init(threshold: u8) {
    let l = LOGGER.get_or_init(|| Logger {
        sink: Mutex::new(Sink::Stderr),
        threshold: AtomicU8::new(threshold),
        mirror_stderr: AtomicBool::new(false),
    });
    let _ = log::set_logger(l);
    log::set_max_level(log::LevelFilter::Trace);
}

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| Logger {
        sink: Mutex::new(Sink::Stderr),
        threshold: AtomicU8::new(5),
        mirror_stderr: AtomicBool::new(false),
    })
}

/// Sets the level threshold (ulogd numbers).
pub fn set_threshold(t: u8) {
    logger().threshold.store(t, Ordering::Relaxed);
}

/// Mirrors every line to stderr as well (`-v`).
pub fn set_mirror(on: bool) {
    logger().mirror_stderr.store(on, Ordering::Relaxed);
}

fn open_append(path: &str) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Points the log at `logfile` (a path, `stdout` or `syslog`).
pub fn set_logfile(logfile: &str) -> std::io::Result<()> {
    let sink = match logfile {
        "stdout" => Sink::Stdout,
        "syslog" => {
            // SAFETY: a static ident string that lives for the whole process.
            unsafe { libc::openlog(c"rulogd".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
            Sink::Syslog
        }
        p => Sink::File {
            path: p.to_string(),
            file: open_append(p)?,
        },
    };
    *logger().sink.lock().unwrap_or_else(|e| e.into_inner()) = sink;
    Ok(())
}

/// SIGHUP: reopens a log file (after logrotate moved it); keeps the old one on failure.
pub fn reopen() {
    let mut sink = logger().sink.lock().unwrap_or_else(|e| e.into_inner());
    if let Sink::File { path, file } = &mut *sink {
        match open_append(path) {
            Ok(f) => *file = f,
            Err(e) => eprintln!("rulogd: cannot reopen log file {path}: {e}"),
        }
    }
}
