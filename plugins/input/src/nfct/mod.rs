//! NFCT: connection tracking flows from ctnetlink, as ulogd's
//! `ulogd_inpflow_NFCT` logs them.
//!
//! Three modes, as in ulogd:
//! - events without the table (`hash_enable=0`): every NEW and DESTROY
//!   event is a record;
//! - events with the table (the default): NEW and UPDATE only fill the flow
//!   table, each DESTROY is a record carrying the start time that was
//!   noted; the table is loaded from a dump at start and checked against
//!   the kernel after lost events;
//! - polling (`pollinterval=N`): the table is refreshed from a dump every N
//!   seconds and flows that have gone from the kernel are logged.
//!
//! Records hold decoded values; key `ct` points at the entry's attributes
//! in the receive buffer. The accept filters run in userspace on decoded
//! tuples (ulogd compiles them to a BPF socket filter; the results are the
//! same).

use crate::common::{bind_slots, share_chunk};
use bytes::{Bytes, BytesMut};
use rulogd_netlink::conntrack::{Conntrack, CtEvent, Tuple};
use rulogd_netlink::enobufs::{RcvbufPolicy, Voice};
use rulogd_netlink::socket::{NlSocket, Recv};
pub(crate) use rulogd_plugin::now_sec_usec;
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Counter, Emitter, Input, KeyDef, KeyType, ReadStatus, Record,
    Signal, Slot, Span, StatSet, Value,
};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

mod events;
#[cfg(test)]
pub(crate) mod kernel_test;
mod query;
mod setup;
mod table;
#[cfg(test)]
pub(crate) mod tests;

pub use setup::{AddrFilter, Settings, OPTIONS};
pub use table::{Flow, FlowKey, FlowTable, Inserted};

use query::Querier;

/// Receives per `read()` call before yielding to the core.
pub const RECV_BUDGET: usize = 64;
/// Event datagrams hold one entry of a few hundred bytes; dumps are read
/// by the query socket.
const BUFSIZE: usize = 16384;

/// Longest time `stop` reads events already in the socket.
const STOP_DRAIN: Duration = Duration::from_millis(500);

const IETF: u32 = 0;
const NETFILTER: u32 = 21373;

rulogd_plugin::key_table! {
    /// The output keys: ulogd's, in its order, with its IPFIX ids; the ICMPv6
    /// pair is 2.0.9's.
    pub static KEYS: [KeyDef; NKEYS];
    K_ORIG_SADDR = KeyDef::new("orig.ip.saddr", KeyType::IpAddr).ipfix(IETF, 8);
    K_ORIG_DADDR = KeyDef::new("orig.ip.daddr", KeyType::IpAddr).ipfix(IETF, 12);
    K_ORIG_PROTO = KeyDef::new("orig.ip.protocol", KeyType::U8).ipfix(IETF, 4);
    K_ORIG_SPORT = KeyDef::new("orig.l4.sport", KeyType::U16).ipfix(IETF, 7);
    K_ORIG_DPORT = KeyDef::new("orig.l4.dport", KeyType::U16).ipfix(IETF, 11);
    K_ORIG_BYTES = KeyDef::new("orig.raw.pktlen", KeyType::U64).ipfix(IETF, 85);
    K_ORIG_PKTS = KeyDef::new("orig.raw.pktcount", KeyType::U64).ipfix(IETF, 86);
    K_REPLY_SADDR = KeyDef::new("reply.ip.saddr", KeyType::IpAddr).ipfix(IETF, 8);
    K_REPLY_DADDR = KeyDef::new("reply.ip.daddr", KeyType::IpAddr).ipfix(IETF, 12);
    K_REPLY_PROTO = KeyDef::new("reply.ip.protocol", KeyType::U8).ipfix(IETF, 4);
    K_REPLY_SPORT = KeyDef::new("reply.l4.sport", KeyType::U16).ipfix(IETF, 7);
    K_REPLY_DPORT = KeyDef::new("reply.l4.dport", KeyType::U16).ipfix(IETF, 11);
    K_REPLY_BYTES = KeyDef::new("reply.raw.pktlen", KeyType::U64).ipfix(IETF, 85);
    K_REPLY_PKTS = KeyDef::new("reply.raw.pktcount", KeyType::U64).ipfix(IETF, 86);
    K_ICMP_CODE = KeyDef::new("icmp.code", KeyType::U8).ipfix(IETF, 177);
    K_ICMP_TYPE = KeyDef::new("icmp.type", KeyType::U8).ipfix(IETF, 176);
    K_ICMPV6_CODE = KeyDef::new("icmpv6.code", KeyType::U8).ipfix(IETF, 179);
    K_ICMPV6_TYPE = KeyDef::new("icmpv6.type", KeyType::U8).ipfix(IETF, 178);
    K_MARK = KeyDef::new("ct.mark", KeyType::U32).ipfix(NETFILTER, 4);
    K_ID = KeyDef::new("ct.id", KeyType::U32).ipfix(NETFILTER, 6);
    K_EVENT = KeyDef::new("ct.event", KeyType::U32);
    K_START_SEC = KeyDef::new("flow.start.sec", KeyType::U32).ipfix(IETF, 150);
    K_START_USEC = KeyDef::new("flow.start.usec", KeyType::U32).ipfix(IETF, 154);
    K_END_SEC = KeyDef::new("flow.end.sec", KeyType::U32).ipfix(IETF, 151);
    // ulogd gives the end microseconds flowEndSeconds' id too.
    K_END_USEC = KeyDef::new("flow.end.usec", KeyType::U32).ipfix(IETF, 151);
    K_FAMILY = KeyDef::new("oob.family", KeyType::U8);
    K_PROTOCOL = KeyDef::new("oob.protocol", KeyType::U8);
    K_CT = KeyDef::new("ct", KeyType::Raw);
}

rulogd_plugin::plugin! {
    Input "NFCT" (build): "connection tracking flows (ctnetlink events or polling)";
    options &OPTIONS;
    output &KEYS;
}

/// One flow to log: the decoded entry, whichever way it was learnt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowRec {
    /// `nfgen_family`.
    pub family: u8,
    /// Original tuple.
    pub orig: Tuple,
    /// Reply tuple.
    pub reply: Tuple,
    /// Original and reply counters (0 when the kernel does not count).
    pub counters: [rulogd_netlink::conntrack::Counters; 2],
    /// `ct.mark`.
    pub mark: u32,
    /// `ct.id`.
    pub id: u32,
    /// The entry's attributes in the record's buffer (`ct`), if from a message.
    pub raw: Option<Span>,
    /// Start time; `None` or second 0 leaves the keys unset.
    pub start: Option<(u32, u32)>,
    /// End time, same rule.
    pub end: Option<(u32, u32)>,
}

impl FlowRec {
    /// The flow an entry message describes (times to be filled in).
    pub fn of(ct: &Conntrack) -> FlowRec {
        FlowRec {
            family: ct.family,
            orig: ct.orig.unwrap_or_default(),
            reply: ct.reply.unwrap_or_default(),
            counters: [
                ct.counters_orig.unwrap_or_default(),
                ct.counters_reply.unwrap_or_default(),
            ],
            mark: ct.mark.unwrap_or(0),
            id: ct.id.unwrap_or(0),
            raw: Some(ct.attrs),
            start: None,
            end: None,
        }
    }

    /// The flow the table holds under `key`.
    pub fn of_table(key: &FlowKey, f: &Flow) -> FlowRec {
        FlowRec {
            family: key.family,
            orig: key.orig,
            reply: f.reply,
            counters: f.counters,
            mark: f.mark,
            id: f.id,
            raw: None,
            start: Some(f.start),
            end: None,
        }
    }
}

/// A kernel time in ns as ulogd converts it: seconds and microseconds.
#[inline]
pub fn ns_to_sec_usec(ns: u64) -> (u32, u32) {
    (
        (ns / 1_000_000_000) as u32,
        ((ns % 1_000_000_000) / 1000) as u32,
    )
}

/// Whether ulogd exports ports for this layer-4 protocol.
#[inline]
fn has_ports(proto: u8) -> bool {
    // TCP, UDP, UDP-Lite, SCTP, DCCP.
    matches!(proto, 6 | 17 | 136 | 132 | 33)
}

fn addr(family: u8, a: &[u8; 16]) -> Option<Value> {
    match family as i32 {
        libc::AF_INET => Some(Value::Ipv4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
        libc::AF_INET6 => Some(Value::Ipv6(Ipv6Addr::from(*a))),
        _ => None,
    }
}

/// Fills `rec` with one flow, with ulogd's validity rules.
pub fn fill_record(rec: &mut Record, s: &[Option<Slot>; NKEYS], f: &FlowRec, event: CtEvent) {
    rec.set_opt(s[K_EVENT], Value::U32(event as u32));
    rec.set_opt(s[K_FAMILY], Value::U8(f.family));
    // ulogd: "FIXME".
    rec.set_opt(s[K_PROTOCOL], Value::U8(0));
    let pairs = [
        (K_ORIG_SADDR, &f.orig.src),
        (K_ORIG_DADDR, &f.orig.dst),
        (K_REPLY_SADDR, &f.reply.src),
        (K_REPLY_DADDR, &f.reply.dst),
    ];
    for (k, a) in pairs {
        if let (Some(slot), Some(v)) = (s[k], addr(f.family, a)) {
            rec.set(slot, v);
        }
    }
    rec.set_opt(s[K_ORIG_PROTO], Value::U8(f.orig.proto));
    rec.set_opt(s[K_REPLY_PROTO], Value::U8(f.reply.proto));
    match f.orig.proto {
        p if has_ports(p) => {
            rec.set_opt(s[K_ORIG_SPORT], Value::U16(f.orig.sport));
            rec.set_opt(s[K_ORIG_DPORT], Value::U16(f.orig.dport));
        }
        1 => {
            rec.set_opt(s[K_ICMP_CODE], Value::U8(f.orig.icmp_code));
            rec.set_opt(s[K_ICMP_TYPE], Value::U8(f.orig.icmp_type));
        }
        58 => {
            rec.set_opt(s[K_ICMPV6_CODE], Value::U8(f.orig.icmp_code));
            rec.set_opt(s[K_ICMPV6_TYPE], Value::U8(f.orig.icmp_type));
        }
        _ => {}
    }
    if has_ports(f.reply.proto) {
        rec.set_opt(s[K_REPLY_SPORT], Value::U16(f.reply.sport));
        rec.set_opt(s[K_REPLY_DPORT], Value::U16(f.reply.dport));
    }
    let [o, r] = f.counters;
    rec.set_opt(s[K_ORIG_BYTES], Value::U64(o.bytes));
    rec.set_opt(s[K_ORIG_PKTS], Value::U64(o.packets));
    rec.set_opt(s[K_REPLY_BYTES], Value::U64(r.bytes));
    rec.set_opt(s[K_REPLY_PKTS], Value::U64(r.packets));
    rec.set_opt(s[K_MARK], Value::U32(f.mark));
    rec.set_opt(s[K_ID], Value::U32(f.id));
    if let Some((sec, usec)) = f.start.filter(|t| t.0 != 0) {
        rec.set_opt(s[K_START_SEC], Value::U32(sec));
        rec.set_opt(s[K_START_USEC], Value::U32(usec));
    }
    if let Some((sec, usec)) = f.end.filter(|t| t.0 != 0) {
        rec.set_opt(s[K_END_SEC], Value::U32(sec));
        rec.set_opt(s[K_END_USEC], Value::U32(usec));
    }
    if let Some(raw) = f.raw {
        rec.set_opt(s[K_CT], Value::Raw(raw));
    }
}

/// How this instance gets its flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Events, each NEW and DESTROY logged.
    Events,
    /// Events into the table, DESTROY logged.
    Hash,
    /// Periodic dumps into the table.
    Polling,
}

/// The counters of one instance, registered as `<instance> (NFCT)`.
struct Stats {
    received: Counter,
    logged: Counter,
    enobufs: Counter,
    malformed: Counter,
    filtered: Counter,
    unsupported: Counter,
    table_full: Counter,
    replaced: Counter,
    purged: Counter,
    resyncs: Counter,
    flows: Counter,
    table_bytes: Counter,
    rcvbuf: Counter,
}

impl Stats {
    fn new(set: &StatSet) -> Stats {
        Stats {
            received: set.counter("received"),
            logged: set.counter("logged"),
            enobufs: set.counter("enobufs"),
            malformed: set.counter("malformed"),
            filtered: set.counter("filtered"),
            unsupported: set.counter("unsupported"),
            table_full: set.counter("table_full"),
            replaced: set.counter("replaced"),
            purged: set.counter("purged"),
            resyncs: set.counter("resyncs"),
            flows: set.gauge("flows"),
            table_bytes: set.gauge("table_bytes"),
            rcvbuf: set.gauge("rcvbuf"),
        }
    }
}

/// A running NFCT input.
pub struct NfctInput {
    name: String,
    mode: Mode,
    s: Settings,
    /// The event socket (event modes).
    ev: Option<NlSocket>,
    buf: BytesMut,
    q: Querier,
    table: Option<FlowTable>,
    /// Dump generation, bumped by every poll or resync.
    gen: u32,
    slots: [Option<Slot>; NKEYS],
    stats: Stats,
    /// Growth of the events socket's receive buffer on ENOBUFS.
    rcvbuf: RcvbufPolicy,
    resync_at: Option<Instant>,
    warned: [bool; 3],
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Input>, BuildError> {
    let s = Settings::from_options(ctx.options)?;
    setup::check_sysctls(ctx.instance, &s);
    let set = StatSet::new(format!("{} (NFCT)", ctx.instance));
    ctx.shared.add_stats(set.clone());
    let mut inp = NfctInput::new(ctx.instance, s, &set)?;
    inp.start()?;
    Ok(Box::new(inp))
}

impl NfctInput {
    /// Opens the sockets for `s` and subscribes to the events of its mode.
    pub fn new(name: &str, s: Settings, set: &StatSet) -> Result<NfctInput, BuildError> {
        let q =
            Querier::open().map_err(|e| BuildError::io("NFCT: cannot open netlink socket", e))?;
        let ev = if s.pollinterval != 0 {
            None
        } else {
            let sock = NlSocket::open(libc::NETLINK_NETFILTER)
                .map_err(|e| BuildError::io("NFCT: cannot open netlink socket", e))?;
            setup::subscribe(&sock, s.event_mask)?;
            if s.rcvbuf != 0 {
                let got = sock
                    .set_rcvbuf(s.rcvbuf)
                    .map_err(|e| BuildError::io("NFCT: setting netlink_socket_buffer_size", e))?;
                log::info!("NFCT netlink buffer size has been set to {got}");
            }
            if s.reliable {
                setup::set_reliable(&sock)?;
            }
            Some(sock)
        };
        Ok(NfctInput::with_sockets(name, s, ev, q, set))
    }

    /// An input over sockets already set up (tests pass no event socket
    /// and feed datagrams to `on_datagram`).
    fn with_sockets(
        name: &str,
        s: Settings,
        ev: Option<NlSocket>,
        q: Querier,
        set: &StatSet,
    ) -> NfctInput {
        let mode = match (s.pollinterval, s.hash) {
            (0, false) => Mode::Events,
            (0, true) => Mode::Hash,
            _ => Mode::Polling,
        };
        let stats = Stats::new(set);
        let actual = ev.as_ref().and_then(|e| e.rcvbuf().ok()).unwrap_or(0);
        stats.rcvbuf.set(actual as u64);
        let table = (mode != Mode::Events).then(|| FlowTable::new(s.buckets, s.max_entries));
        NfctInput {
            name: name.to_string(),
            mode,
            rcvbuf: RcvbufPolicy::for_socket(Voice::Nfct, s.rcvbuf, actual, s.rcvbuf_max),
            s,
            ev,
            buf: BytesMut::with_capacity(BUFSIZE),
            q,
            table,
            gen: 0,
            slots: std::array::from_fn(|i| Some(i as Slot)),
            stats,
            resync_at: None,
            warned: [false; 3],
        }
    }

    /// Start-up work: the initial table load in hash mode.
    fn start(&mut self) -> Result<(), BuildError> {
        match self.mode {
            Mode::Events => log::info!("NFCT plugin working in event mode"),
            Mode::Hash => {
                // Events that arrive during the dump wait in the event socket.
                let mut sink = events::NoEmit::new();
                self.refresh(&mut sink, false)
                    .map_err(|e| BuildError::io("NFCT: dumping the conntrack table", e))?;
                log::info!(
                    "NFCT plugin working in event mode ({} flows in the table)",
                    self.table.as_ref().map_or(0, FlowTable::len)
                );
            }
            Mode::Polling => log::info!("NFCT working in polling mode"),
        }
        Ok(())
    }

    fn poll_every(&self) -> Duration {
        Duration::from_secs(u64::from(self.s.pollinterval.max(1)))
    }

    fn publish(&self) {
        if let Some(t) = &self.table {
            self.stats.flows.set(t.len() as u64);
            self.stats.table_bytes.set(t.memory_bytes() as u64);
        }
    }
}

impl Input for NfctInput {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        bind_slots(&mut self.slots, b);
        Ok(())
    }

    fn fd(&self) -> Option<RawFd> {
        self.ev.as_ref().map(NlSocket::raw_fd)
    }

    fn interval(&self) -> Option<Duration> {
        match self.mode {
            Mode::Events => None,
            // Checks whether a resync is due.
            Mode::Hash => Some(Duration::from_secs(1)),
            Mode::Polling => Some(self.poll_every()),
        }
    }

    fn read(&mut self, em: &mut dyn Emitter) -> io::Result<ReadStatus> {
        for _ in 0..RECV_BUDGET {
            let r = match &self.ev {
                Some(ev) => ev.recv_chunk(&mut self.buf, BUFSIZE),
                None => return Ok(ReadStatus::Idle),
            };
            match r? {
                Recv::Chunk { chunk, .. } => {
                    self.on_datagram(&chunk, em);
                    em.record().release_buf();
                }
                Recv::Empty => {
                    self.rcvbuf.recovered();
                    self.publish();
                    return Ok(ReadStatus::Idle);
                }
                Recv::Interrupted => {}
                Recv::Overrun => self.on_enobufs(),
            }
        }
        self.publish();
        Ok(ReadStatus::More)
    }

    fn tick(&mut self, now: Instant, em: &mut dyn Emitter) {
        match self.mode {
            Mode::Events => {}
            Mode::Hash => {
                if self.resync_at.is_some_and(|t| now >= t) {
                    self.resync_at = None;
                    self.stats.resyncs.inc();
                    if let Err(e) = self.refresh(em, true) {
                        log::error!("{} (NFCT): resync failed: {e}", self.name);
                    }
                }
            }
            Mode::Polling => {
                if let Err(e) = self.refresh(em, true) {
                    log::error!(
                        "{} (NFCT): polling the conntrack table failed: {e}",
                        self.name
                    );
                }
            }
        }
        self.publish();
    }

    /// The kernel sends conntrack events one by one, with no batch to
    /// flush; what matters is the events already in the socket, read here
    /// (for at most [`STOP_DRAIN`]) rather than dropped with it.
    fn stop(&mut self, em: &mut dyn Emitter) {
        let until = Instant::now() + STOP_DRAIN;
        while Instant::now() < until {
            match self.read(em) {
                Ok(ReadStatus::More) => {}
                Ok(ReadStatus::Idle | ReadStatus::Finished) => break,
                Err(e) => {
                    log::error!("{} (NFCT): read error while stopping: {e}", self.name);
                    break;
                }
            }
        }
    }

    fn signal(&mut self, sig: Signal, em: &mut dyn Emitter) {
        if sig == Signal::Usr2 {
            if let Err(e) = self.dump_reset(em) {
                log::error!("{} (NFCT): cannot dump and reset counters: {e}", self.name);
            }
            self.publish();
        }
    }
}

/// Fills the slots of a record sharing `chunk` (set once per datagram).
fn with_buf<'a>(em: &'a mut dyn Emitter, chunk: Option<&Bytes>) -> &'a mut Record {
    let rec = em.record();
    if let Some(c) = chunk {
        share_chunk(rec, c);
    }
    rec
}

/// Whether the accept filters let this entry through. ulogd installs them
/// on the event socket only, so polling mode logs everything.
#[inline]
fn accepts(mode: Mode, s: &Settings, ct: &Conntrack) -> bool {
    if mode == Mode::Polling || !s.filtering() {
        return true;
    }
    let o = ct.orig.unwrap_or_default();
    (s.protos.is_empty() || s.protos.contains(&o.proto))
        && s.src.accepts(ct.family, &o.src)
        && s.dst.accepts(ct.family, &o.dst)
}
