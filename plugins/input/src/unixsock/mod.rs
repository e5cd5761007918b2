//! UNIXSOCK: packets that another program (originally NuFW's nuauth, or
//! ulogd's `contrib/pcap2ulog`) sends over a Unix stream socket, one framed
//! message per packet (see [`frame`] for the format).
//!
//! Options, keys and values are ulogd 2.0.8's. The differences, all listed in
//! docs/COMPATIBILITY.md: any number of clients at once (ulogd takes one and
//! turns the others away), a client that sends garbage is logged and
//! disconnected alone (ulogd's whole stream desynchronises, and a read error
//! exits the daemon), a stale socket file left by a crash is replaced, and a
//! message without options reads nothing past its payload.
//!
//! The input's fd is an epoll instance holding the listener and every
//! client, so the core's single poll covers them all. Records point into the
//! client's receive buffer, which they share; nothing is copied per message.

use crate::common::{bind_slots, share_chunk};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Counter, Emitter, Input, KeyDef, KeyType, OptionDef, Options,
    ReadStatus, Record, Slot, StatSet, Value,
};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

mod accept;
mod client;
pub mod frame;
mod listen;
#[cfg(test)]
mod tests;

use client::Client;
use frame::{decode, frames, Decoded, MAX_FRAME};
use listen::FileId;

/// Connections served at once. At the limit the listener is paused and
/// further connections wait in its backlog until a client leaves (ulogd
/// instead accepts and closes every connection after the first).
pub const MAX_CLIENTS: usize = 256;

/// Readiness events handled per `read()` call.
const EVENTS: usize = 32;

/// Longest time `stop` reads what clients already sent: a client that
/// streams without pause would otherwise hold the daemon.
const STOP_DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// The epoll token of the listening socket; clients use their slot index.
const LISTENER: u64 = u64::MAX;

const IETF: u32 = 0;
const NETFILTER: u32 = 21373;

/// The options, in ulogd's order with its defaults.
pub static OPTIONS: [OptionDef; 5] = [
    OptionDef::str("socket_path", "/var/run/ulogd/ulogd2.sock", "path of the listening Unix stream socket; a stale socket file nobody listens on is replaced").check(rulogd_plugin::options::check_not_empty).unique(),
    OptionDef::int("bufsize", "0", "receive buffer per client in bytes; 0 uses the listening socket's SO_RCVBUF. Raised to 65539 if smaller, so that any message fits").range(0, i32::MAX as i64),
    OptionDef::int("perms", "0600", "mode of the socket file").range(0, 0o7777),
    OptionDef::str("owner", "", "user (name or uid) the socket file is given to; empty leaves it"),
    OptionDef::str("group", "", "group (name or gid) the socket file is given to; empty leaves it"),
];

rulogd_plugin::key_table! {
    /// The output keys: ulogd 2.0.8's, in its order, with its IPFIX ids. Only
    /// the packet keys, `oob.prefix`/`in`/`out`/`time.sec`, the `nufw.*` keys
    /// and `raw.label` are ever set; the others exist so that stacks written for
    /// ulogd build.
    pub static KEYS: [KeyDef; NKEYS];
    K_RAW_MAC = KeyDef::new("raw.mac", KeyType::Raw);
    K_RAW_PKT = KeyDef::new("raw.pkt", KeyType::Raw).ipfix(NETFILTER, 1);
    K_RAW_PKTLEN = KeyDef::new("raw.pktlen", KeyType::U32).ipfix(NETFILTER, 2);
    K_RAW_PKTCOUNT = KeyDef::new("raw.pktcount", KeyType::U32).ipfix(IETF, 2);
    K_PREFIX = KeyDef::new("oob.prefix", KeyType::String).ipfix(NETFILTER, 3);
    K_TIME_SEC = KeyDef::new("oob.time.sec", KeyType::U32).ipfix(IETF, 150);
    K_OOB_TIME_USEC = KeyDef::new("oob.time.usec", KeyType::U32).ipfix(IETF, 154);
    K_OOB_MARK = KeyDef::new("oob.mark", KeyType::U32).ipfix(NETFILTER, 4);
    K_IN = KeyDef::new("oob.in", KeyType::String).ipfix(IETF, 10);
    K_OUT = KeyDef::new("oob.out", KeyType::String).ipfix(IETF, 14);
    K_OOB_HOOK = KeyDef::new("oob.hook", KeyType::U8).ipfix(NETFILTER, 5);
    K_RAW_MAC_LEN = KeyDef::new("raw.mac_len", KeyType::U16);
    K_OOB_SEQ_LOCAL = KeyDef::new("oob.seq.local", KeyType::U32).ipfix(NETFILTER, 7);
    K_OOB_SEQ_GLOBAL = KeyDef::new("oob.seq.global", KeyType::U32).ipfix(NETFILTER, 8);
    K_FAMILY = KeyDef::new("oob.family", KeyType::U8);
    K_OOB_PROTOCOL = KeyDef::new("oob.protocol", KeyType::U16);
    K_OOB_UID = KeyDef::new("oob.uid", KeyType::U32);
    K_OOB_GID = KeyDef::new("oob.gid", KeyType::U32);
    K_LABEL = KeyDef::new("raw.label", KeyType::U8);
    K_RAW_TYPE = KeyDef::new("raw.type", KeyType::U16);
    K_RAW_MAC_SADDR = KeyDef::new("raw.mac.saddr", KeyType::Raw).ipfix(IETF, 56);
    K_RAW_MAC_ADDRLEN = KeyDef::new("raw.mac.addrlen", KeyType::U16);
    K_USER_NAME = KeyDef::new("nufw.user.name", KeyType::String);
    K_USER_ID = KeyDef::new("nufw.user.id", KeyType::U32);
    K_OS_NAME = KeyDef::new("nufw.os.name", KeyType::String);
    K_OS_REL = KeyDef::new("nufw.os.rel", KeyType::String);
    K_OS_VERS = KeyDef::new("nufw.os.vers", KeyType::String);
    K_APP_NAME = KeyDef::new("nufw.app.name", KeyType::String);
}

rulogd_plugin::plugin! {
    Input "UNIXSOCK" (build): "packets sent by other programs over a Unix stream socket (ulogd2/NuFW framing)";
    options &OPTIONS;
    output &KEYS;
}

/// Validated options of one UNIXSOCK instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Socket file path.
    pub path: PathBuf,
    /// Per-client buffer (0 = the listener's SO_RCVBUF).
    pub bufsize: usize,
    /// Socket file mode.
    pub perms: u32,
    /// Owner name or uid ("" = leave).
    pub owner: String,
    /// Group name or gid ("" = leave).
    pub group: String,
}

impl Settings {
    /// Reads and checks the options.
    pub fn from_options(o: &Options) -> Result<Settings, BuildError> {
        let path = o.str("socket_path");
        if path.is_empty() {
            return Err(BuildError::option("socket_path", "must not be empty"));
        }
        let bufsize = o.int("bufsize");
        if !(0..=i32::MAX as i64).contains(&bufsize) {
            return Err(BuildError::option(
                "bufsize",
                format!("{bufsize} is out of range 0..={}", i32::MAX),
            ));
        }
        let perms = o.int("perms");
        if !(0..=0o7777).contains(&perms) {
            return Err(BuildError::option(
                "perms",
                format!("{perms} is not a file mode (0 to 07777)"),
            ));
        }
        Ok(Settings {
            path: PathBuf::from(path),
            bufsize: bufsize as usize,
            perms: perms as u32,
            owner: o.str("owner").to_string(),
            group: o.str("group").to_string(),
        })
    }
}

/// The counters of one instance, registered as `<instance> (UNIXSOCK)`.
struct Stats {
    received: Counter,
    bytes: Counter,
    clients: Counter,
    connected: Counter,
    rejected: Counter,
    paused: Counter,
    malformed: Counter,
    truncated: Counter,
    unknown_options: Counter,
}

impl Stats {
    fn new(set: &StatSet) -> Stats {
        Stats {
            received: set.counter("received"),
            bytes: set.counter("bytes"),
            clients: set.counter("clients"),
            connected: set.gauge("connected"),
            rejected: set.counter("rejected"),
            paused: set.counter("accept_paused"),
            malformed: set.counter("malformed"),
            truncated: set.counter("truncated"),
            unknown_options: set.counter("unknown_options"),
        }
    }
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Input>, BuildError> {
    let s = Settings::from_options(ctx.options)?;
    let set = StatSet::new(format!("{} (UNIXSOCK)", ctx.instance));
    ctx.shared.add_stats(set.clone());
    Ok(Box::new(UnixsockInput::open(ctx.instance, &s, &set)?))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn epoll_add(ep: RawFd, fd: RawFd, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    cvt(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(|_| ())
}

/// Fills `rec` from one decoded message, setting what ulogd sets.
pub fn fill_record(rec: &mut Record, slots: &[Option<Slot>; NKEYS], d: &Decoded) {
    let s = slots;
    let text = |v: Option<rulogd_plugin::Span>| v.map(Value::StrSpan);
    rec.set_opt(s[K_FAMILY], Value::U8(d.family));
    rec.set_opt(s[K_RAW_PKT], Value::Raw(d.payload));
    rec.set_opt(s[K_RAW_PKTLEN], Value::U32(d.payload.len));
    rec.set_opt(s[K_RAW_PKTCOUNT], Value::U32(1));
    for (k, v) in [
        (K_PREFIX, d.prefix),
        (K_IN, d.oob_in),
        (K_OUT, d.oob_out),
        (K_USER_NAME, d.user_name),
        (K_OS_NAME, d.os_name),
        (K_OS_REL, d.os_rel),
        (K_OS_VERS, d.os_vers),
        (K_APP_NAME, d.app_name),
    ] {
        if let Some(v) = text(v) {
            rec.set_opt(s[k], v);
        }
    }
    if let Some(v) = d.time_sec {
        rec.set_opt(s[K_TIME_SEC], Value::U32(v));
    }
    if let Some(v) = d.user_id {
        rec.set_opt(s[K_USER_ID], Value::U32(v));
    }
    if let Some(v) = d.label {
        rec.set_opt(s[K_LABEL], Value::U8(v));
    }
}

/// A running UNIXSOCK input.
pub struct UnixsockInput {
    name: String,
    epoll: OwnedFd,
    listener: UnixListener,
    path: PathBuf,
    file: Option<FileId>,
    /// Clients by epoll token; a closed client leaves `None` for reuse.
    clients: Vec<Option<Client>>,
    connected: usize,
    next_id: u64,
    bufsize: usize,
    slots: [Option<Slot>; NKEYS],
    stats: Stats,
    accept_warned: bool,
    /// The listener is out of the epoll set because MAX_CLIENTS are served.
    paused: bool,
    /// Pauses since the last notice about the limit, and when it was logged.
    pauses_unlogged: u64,
    last_limit_notice: Option<std::time::Instant>,
}

impl UnixsockInput {
    /// Creates the socket file and starts listening; counters go to `set`.
    pub fn open(name: &str, s: &Settings, set: &StatSet) -> Result<UnixsockInput, BuildError> {
        let (listener, file) = listen::listen(&s.path, s.perms, &s.owner, &s.group)?;
        let mut inp = UnixsockInput::with_listener(name, s, listener, set)?;
        inp.file = Some(file);
        Ok(inp)
    }

    /// An input around an already listening, non-blocking socket.
    pub fn with_listener(
        name: &str,
        s: &Settings,
        listener: UnixListener,
        set: &StatSet,
    ) -> Result<UnixsockInput, BuildError> {
        // SAFETY: plain syscall; the result is checked before use.
        let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
            .map_err(|e| BuildError::io("UNIXSOCK: epoll_create1", e))?;
        // SAFETY: `ep` was just created and is owned by nobody else.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        epoll_add(epoll.as_raw_fd(), listener.as_raw_fd(), LISTENER)
            .map_err(|e| BuildError::io("UNIXSOCK: epoll_ctl", e))?;
        let mut bufsize = s.bufsize;
        if bufsize == 0 {
            bufsize = listen::rcvbuf(listener.as_raw_fd())
                .map_err(|e| BuildError::io("UNIXSOCK: cannot read SO_RCVBUF; set bufsize", e))?;
        }
        if bufsize < MAX_FRAME {
            log::info!("{name} (UNIXSOCK): bufsize {bufsize} raised to {MAX_FRAME} so that any message fits");
            bufsize = MAX_FRAME;
        }
        Ok(UnixsockInput {
            name: name.to_string(),
            epoll,
            listener,
            path: s.path.clone(),
            file: None,
            clients: Vec::new(),
            connected: 0,
            next_id: 1,
            bufsize,
            slots: std::array::from_fn(|i| Some(i as Slot)),
            stats: Stats::new(set),
            accept_warned: false,
            paused: false,
            pauses_unlogged: 0,
            last_limit_notice: None,
        })
    }

    /// The per-client buffer size in use.
    pub fn bufsize(&self) -> usize {
        self.bufsize
    }

    /// Forgets client `slot` and closes its connection.
    fn close(&mut self, slot: usize) {
        let Some(c) = self.clients.get_mut(slot).and_then(Option::take) else {
            return;
        };
        // SAFETY: removing a registered fd; a null event is allowed for DEL.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                c.stream.as_raw_fd(),
                std::ptr::null_mut(),
            )
        };
        self.connected -= 1;
        self.stats.connected.set(self.connected as u64);
        if self.paused && self.connected < MAX_CLIENTS {
            self.resume();
        }
    }

    /// Reads once from client `slot` and emits every complete message.
    fn serve(&mut self, slot: usize, em: &mut dyn Emitter) -> Served {
        let Some(c) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
            return Served::Closed;
        };
        c.make_room(self.bufsize);
        let n = match c.recv() {
            Ok(0) => {
                if !c.buf.is_empty() {
                    self.stats.truncated.inc();
                    log::warn!(
                        "{} (UNIXSOCK): {c} disconnected in the middle of a message ({} bytes discarded)",
                        self.name,
                        c.buf.len()
                    );
                } else {
                    log::info!(
                        "{} (UNIXSOCK): {c} disconnected after {} messages",
                        self.name,
                        c.messages
                    );
                }
                self.close(slot);
                return Served::Closed;
            }
            Ok(n) => n,
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => return Served::Drained,
                io::ErrorKind::Interrupted => return Served::Data,
                _ => {
                    log::warn!("{} (UNIXSOCK): {c}: read error, closing: {e}", self.name);
                    self.close(slot);
                    return Served::Closed;
                }
            },
        };
        self.stats.bytes.add(n as u64);
        // Pass 1, headers only: how many bytes are whole messages. Error
        // offsets are relative to the buffer's start, like `complete`.
        let (complete, mut bad) = {
            let mut it = frames(&c.buf);
            let bad = it.by_ref().find_map(Result::err);
            let at = it.consumed();
            (at, bad.map(|e| (e, at)))
        };
        if complete > 0 {
            // Pass 2: the whole messages become a shared chunk the records
            // point into; a partial message stays in the buffer.
            let chunk = c.buf.split_to(complete).freeze();
            share_chunk(em.record(), &chunk);
            let mut good = 0u64;
            for f in frames(&chunk) {
                let Ok(f) = f else { break };
                match decode(&chunk, &f) {
                    Ok(d) => {
                        if d.unknown > 0 {
                            self.stats.unknown_options.add(u64::from(d.unknown));
                            if !c.unknown_warned {
                                c.unknown_warned = true;
                                log::info!(
                                    "{} (UNIXSOCK): {c}: ignoring unknown option {} (further ones are only counted)",
                                    self.name,
                                    d.first_unknown.unwrap_or(0)
                                );
                            }
                        }
                        fill_record(em.record(), &self.slots, &d);
                        em.emit();
                        good += 1;
                    }
                    Err(e) => {
                        bad = Some((e, f.off));
                        break;
                    }
                }
            }
            em.record().release_buf();
            c.messages += good;
            self.stats.received.add(good);
        }
        if let Some((e, at)) = bad {
            self.stats.malformed.inc();
            log::error!(
                "{} (UNIXSOCK): {c}: invalid message at byte {} of its stream: {e}; closing the connection ({} good messages from it were kept)",
                self.name,
                c.offset + at as u64,
                c.messages
            );
            self.close(slot);
            return Served::Closed;
        }
        c.offset += complete as u64;
        Served::Data
    }
}

/// What one read from a client found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Served {
    /// Bytes arrived; more may follow.
    Data,
    /// Nothing more for now.
    Drained,
    /// The connection is gone (end of stream, error or garbage).
    Closed,
}

impl Input for UnixsockInput {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        bind_slots(&mut self.slots, b);
        Ok(())
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.epoll.as_raw_fd())
    }

    fn read(&mut self, em: &mut dyn Emitter) -> io::Result<ReadStatus> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        // SAFETY: `events` has room for EVENTS entries; timeout 0 never blocks.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                EVENTS as libc::c_int,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(ReadStatus::More)
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Ok(ReadStatus::Idle);
        }
        for ev in &events[..n as usize] {
            let token = ev.u64;
            if token == LISTENER {
                self.accept_all(em);
            } else {
                self.serve(token as usize, em);
            }
        }
        Ok(ReadStatus::More)
    }

    /// Reads what connected clients (and those waiting in the backlog)
    /// already sent, for at most [`STOP_DRAIN`], instead of closing on it.
    fn stop(&mut self, em: &mut dyn Emitter) {
        let until = std::time::Instant::now() + STOP_DRAIN;
        while std::time::Instant::now() < until {
            match self.read(em) {
                Ok(ReadStatus::More) => {}
                Ok(ReadStatus::Idle | ReadStatus::Finished) => break,
                Err(e) => {
                    log::error!("{} (UNIXSOCK): read error while stopping: {e}", self.name);
                    break;
                }
            }
        }
    }
}

impl Drop for UnixsockInput {
    fn drop(&mut self) {
        // As ulogd does at stop, but only if the file is still the one this
        // instance created (a newer daemon may have replaced it).
        if let Some(id) = self.file {
            listen::remove_if_ours(&self.path, id);
        }
    }
}
