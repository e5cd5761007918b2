//! SYSLOG: the `print` line of PRINTPKT or PRINTFLOW sent to the local
//! syslog daemon, as ulogd's `ulogd_output_SYSLOG` sends it.
//!
//! ulogd calls `openlog("ulogd", LOG_NDELAY|LOG_PID, LOG_DAEMON)` and then
//! `syslog(level|facility, "%s", print)`. rulogd writes the same datagram to
//! `/dev/log` itself: `<PRI>Mmm dd hh:mm:ss ulogd[PID]: ` and the print text
//! (its trailing newline included), so syslog filters written for ulogd keep
//! matching. It does not go through libc's `syslog()` because `openlog()`
//! state is process-wide: it would rename the daemon's own log lines (ident
//! `rulogd`), and `syslog()` may block the input thread on a busy `/dev/log`.
//! Here a writer thread sends, and a syslog daemon that is away costs
//! counted drops, not a stalled input.
//!
//! As with glibc, facility `LOG_KERN` (0, the default) means "the openlog
//! facility", so the default is `daemon.notice` (PRI 29).

use crate::rendered::{Render, Rendered};
use crate::text::{cstr, now, SyslogClock};
use rulogd_delivery::{
    Batch, Delivery, DeliveryConfig, DeliveryStats, SendError, Transport, WhenFull,
};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, KeyDef, KeyType, OptValue, OptionDef, Options, Output, Record,
    Slot,
};
use std::io::{self, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;

static OPTIONS: [OptionDef; 2] = [
    OptionDef::str(
        "facility",
        "LOG_KERN",
        "LOG_KERN (means daemon, as in ulogd), LOG_DAEMON, LOG_USER or LOG_LOCAL0..LOG_LOCAL7",
    )
    .check(facility_name),
    OptionDef::str("level", "LOG_NOTICE", "LOG_EMERG .. LOG_DEBUG").check(level_name),
];

static INPUT: [KeyDef; 1] = [KeyDef::new("print", KeyType::String)];

rulogd_plugin::plugin! {
    Output "SYSLOG" (build): "Sends the print key of PRINTPKT/PRINTFLOW to the local syslog daemon";
    options &OPTIONS;
    input &INPUT;
}

/// The syslog socket glibc writes to.
const DEV_LOG: &str = "/dev/log";
/// ulogd's ident, kept so that syslog rules written for ulogd still match.
const IDENT: &str = "ulogd";

/// The facility names ulogd accepts, exactly as written, with their values.
const FACILITIES: [(&str, i32); 11] = [
    ("LOG_DAEMON", libc::LOG_DAEMON),
    ("LOG_KERN", libc::LOG_KERN),
    ("LOG_LOCAL0", libc::LOG_LOCAL0),
    ("LOG_LOCAL1", libc::LOG_LOCAL1),
    ("LOG_LOCAL2", libc::LOG_LOCAL2),
    ("LOG_LOCAL3", libc::LOG_LOCAL3),
    ("LOG_LOCAL4", libc::LOG_LOCAL4),
    ("LOG_LOCAL5", libc::LOG_LOCAL5),
    ("LOG_LOCAL6", libc::LOG_LOCAL6),
    ("LOG_LOCAL7", libc::LOG_LOCAL7),
    ("LOG_USER", libc::LOG_USER),
];

/// The level names ulogd accepts.
const LEVELS: [(&str, i32); 8] = [
    ("LOG_EMERG", libc::LOG_EMERG),
    ("LOG_ALERT", libc::LOG_ALERT),
    ("LOG_CRIT", libc::LOG_CRIT),
    ("LOG_ERR", libc::LOG_ERR),
    ("LOG_WARNING", libc::LOG_WARNING),
    ("LOG_NOTICE", libc::LOG_NOTICE),
    ("LOG_INFO", libc::LOG_INFO),
    ("LOG_DEBUG", libc::LOG_DEBUG),
];

/// `facility` names one of [`FACILITIES`], exactly as the builder matches.
fn facility_name(v: &OptValue, _: &Options) -> Result<(), String> {
    let s = if let OptValue::Str(s) = v {
        s.as_str()
    } else {
        ""
    };
    lookup(&FACILITIES, "facility", "facility", s)
        .map(|_| ())
        .map_err(|e| e.detail())
}

/// `level` names one of [`LEVELS`], exactly as the builder matches.
fn level_name(v: &OptValue, _: &Options) -> Result<(), String> {
    let s = if let OptValue::Str(s) = v {
        s.as_str()
    } else {
        ""
    };
    lookup(&LEVELS, "level", "level", s)
        .map(|_| ())
        .map_err(|e| e.detail())
}

fn lookup(table: &[(&str, i32)], option: &str, what: &str, v: &str) -> Result<i32, BuildError> {
    table
        .iter()
        .find(|(n, _)| *n == v)
        .map(|(_, x)| *x)
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            BuildError::option(
                option,
                format!("unknown {what} `{v}`; valid: {}", names.join(", ")),
            )
        })
}

/// The PRI value for the `facility` and `level` options.
pub fn priority(facility: &str, level: &str) -> Result<i32, BuildError> {
    let mut f = lookup(&FACILITIES, "facility", "facility", facility)?;
    let l = lookup(&LEVELS, "level", "level", level)?;
    if f == libc::LOG_KERN {
        // glibc: a priority without facility bits gets openlog's facility.
        f = libc::LOG_DAEMON;
    }
    Ok(f | l)
}

/// One SYSLOG instance in one stack.
pub struct Syslog {
    /// `<PRI>`.
    pri: Box<[u8]>,
    /// ` ulogd[PID]: `.
    tag: Box<[u8]>,
    clock: SyslogClock,
    print: Option<Slot>,
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    let pri = priority(ctx.options.str("facility"), ctx.options.str("level"))?;
    let cfg = DeliveryConfig::new(ctx.instance, "SYSLOG", WhenFull::Drop);
    // The writer connects as it starts (ulogd's LOG_NDELAY) and retries with
    // backoff while no syslog daemon listens; records wait meanwhile.
    let delivery = Delivery::shared(ctx, "SYSLOG", &cfg, || {
        Ok(Box::new(SyslogTransport::new(DEV_LOG)))
    })?;
    // Batched like the files: handed over when the input goes idle.
    let producer = delivery.producer(false);
    Ok(Rendered::boxed(
        producer,
        Syslog {
            pri: format!("<{pri}>").into_bytes().into(),
            // The pid is read here, after -d has forked.
            tag: format!(" {IDENT}[{}]: ", std::process::id())
                .into_bytes()
                .into(),
            clock: SyslogClock::default(),
            print: None,
        },
    ))
}

impl Render for Syslog {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.print = b.input("print");
        Ok(())
    }

    fn render(&mut self, rec: &Record, out: &mut Vec<u8>) -> bool {
        let Some(print) = rec.get_bytes(self.print) else {
            return false;
        };
        let stamp = self.clock.get(now().0);
        out.extend_from_slice(&self.pri);
        out.extend_from_slice(&stamp);
        out.extend_from_slice(&self.tag);
        out.extend_from_slice(cstr(print));
        true
    }
}

/// The local syslog socket: a datagram per record, or, where the socket is
/// a stream, each record followed by a NUL (as glibc sends them).
pub struct SyslogTransport {
    path: PathBuf,
    desc: String,
    sock: Option<Sock>,
}

enum Sock {
    Dgram(UnixDatagram),
    Stream(UnixStream),
}

impl SyslogTransport {
    /// A transport for the socket at `path`; nothing is connected yet.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        SyslogTransport {
            desc: format!("syslog socket {}", path.display()),
            path,
            sock: None,
        }
    }
}

impl Transport for SyslogTransport {
    fn describe(&self) -> &str {
        &self.desc
    }

    fn is_open(&self) -> bool {
        self.sock.is_some()
    }

    fn open(&mut self) -> io::Result<()> {
        let s = UnixDatagram::unbound()?;
        self.sock = Some(match s.connect(&self.path) {
            Ok(()) => Sock::Dgram(s),
            Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
                Sock::Stream(UnixStream::connect(&self.path)?)
            }
            Err(e) => return Err(e),
        });
        Ok(())
    }

    fn send(&mut self, batch: &Batch, from: usize, _: &DeliveryStats) -> Result<(), SendError> {
        let Some(sock) = self.sock.as_mut() else {
            return Err(SendError {
                next: from,
                error: io::Error::new(io::ErrorKind::NotConnected, "not connected"),
            });
        };
        for i in from..batch.records() {
            let rec = batch.record(i);
            let res = match sock {
                Sock::Dgram(d) => loop {
                    match d.send(rec) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        r => break r.map(drop),
                    }
                },
                Sock::Stream(s) => s.write_all(rec).and_then(|()| s.write_all(b"\0")),
            };
            if let Err(error) = res {
                return Err(SendError { next: i, error });
            }
        }
        Ok(())
    }

    fn close(&mut self) {
        self.sock = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{options, temp_dir, text};
    use rulogd_plugin::{Service, SharedRegistry};
    use std::time::Duration;

    #[test]
    fn facility_and_level_are_exact_macro_names() {
        assert_eq!(priority("LOG_KERN", "LOG_NOTICE").unwrap(), 29);
        assert_eq!(priority("LOG_LOCAL3", "LOG_ERR").unwrap(), 155);
        assert_eq!(priority("LOG_USER", "LOG_DEBUG").unwrap(), 15);
        assert_eq!(priority("LOG_DAEMON", "LOG_EMERG").unwrap(), 24);
        let e = priority("log_kern", "LOG_NOTICE").unwrap_err().to_string();
        assert!(e.contains("facility") && e.contains("LOG_LOCAL7"), "{e}");
        let e = priority("LOG_KERN", "NOTICE").unwrap_err().to_string();
        assert!(e.contains("`NOTICE`") && e.contains("LOG_DEBUG"), "{e}");
        // A bad value fails the build.
        let shared = SharedRegistry::default();
        let o = options(REGISTRATION, &[("level", "LOG_LOUD")]);
        let ctx = BuildCtx {
            instance: "s1",
            info: &INFO,
            options: &o,
            shared: &shared,
        };
        assert!(build(&ctx).is_err());
    }

    fn receive(sock: &UnixDatagram, n: usize) -> Vec<Vec<u8>> {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 8192];
        (0..n)
            .map(|_| {
                let k = sock.recv(&mut buf).expect("datagram");
                buf[..k].to_vec()
            })
            .collect()
    }

    #[test]
    fn one_datagram_per_record_in_glibc_format() {
        let dir = temp_dir("syslog");
        let path = dir.join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let cfg = DeliveryConfig::new("s1", "SYSLOG", WhenFull::Drop);
        let mut t = SyslogTransport::new(&path);
        t.open().unwrap();
        let d = Delivery::start(&cfg, Box::new(t)).unwrap();
        let syslog = Syslog {
            pri: b"<29>".as_slice().into(),
            tag: b" ulogd[42]: ".as_slice().into(),
            clock: SyslogClock::default(),
            print: Some(0),
        };
        let mut s = Rendered::boxed(d.producer(true), syslog);
        let mut rec = Record::with_slots(1);
        rec.set(0, text("PFX IN=lo OUT= \n"));
        s.write(&rec).unwrap();
        rec.clear();
        s.write(&rec).unwrap();
        rec.set(0, text("two"));
        s.write(&rec).unwrap();
        let got = receive(&server, 2);
        d.shutdown();
        for (g, tail) in got.iter().zip(["PFX IN=lo OUT= \n", "two"]) {
            let g = String::from_utf8(g.clone()).unwrap();
            assert!(g.starts_with("<29>"), "{g:?}");
            assert_eq!(&g[7..8], " ", "{g:?}");
            assert_eq!(&g[19..], format!(" ulogd[42]: {tail}"), "{g:?}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_syslog_daemon_that_comes_later_gets_the_held_records() {
        let dir = temp_dir("syslog-late");
        let path = dir.join("log");
        let cfg = DeliveryConfig::new("s1", "SYSLOG", WhenFull::Drop);
        let mut t = SyslogTransport::new(&path);
        assert!(t.open().is_err());
        let d = Delivery::start(&cfg, Box::new(t)).unwrap();
        let mut p = d.producer(true);
        p.batch().buf().extend_from_slice(b"<29>held");
        p.commit().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let server = UnixDatagram::bind(&path).unwrap();
        let got = receive(&server, 1);
        d.shutdown();
        assert_eq!(got, [b"<29>held".to_vec()]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
