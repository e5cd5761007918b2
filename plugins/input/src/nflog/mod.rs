//! NFLOG: packets logged by netfilter (`nft ... log group N`, iptables
//! `-j NFLOG`), read from nfnetlink_log over a raw netlink socket.
//!
//! The options, keys and validity rules are ulogd 2.0.8's. The read path is
//! where rulogd differs: ulogd does one `recv()` per poll wakeup and copies
//! through libnetfilter_log, so it loses packets to ENOBUFS long before the
//! kernel is the limit. Here `read()` drains the socket in a bounded loop,
//! decodes each datagram in place, and every value is a span into the
//! received chunk, which the record shares instead of copying.

use crate::common::{bind_slots, note_malformed, share_chunk, warn_truncated};
use crate::packet::{fill_shared, IETF};
use bytes::{Bytes, BytesMut};
use rulogd_netlink::enobufs::{RcvbufPolicy, Voice};
use rulogd_netlink::nflog::{messages, Message, NflogPacket};
use rulogd_netlink::socket::{NlSocket, Recv};
use rulogd_plugin::now_sec_usec;
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Counter, Emitter, Input, KeyDef, KeyType, ReadStatus, Record,
    Slot, StatSet, Value,
};
use std::io;
use std::os::fd::RawFd;

#[cfg(test)]
mod kernel_test;
mod setup;
mod stop;
#[cfg(test)]
mod tests;

use setup::configure_kernel;
#[cfg(test)]
use setup::kernel_error;
pub use setup::{Settings, OPTIONS};
pub use stop::{flush_wait, MAX_FLUSH_WAIT};

/// Receives per `read()` call before yielding to the core, so one busy
/// input cannot starve timers and signals on its thread.
pub const RECV_BUDGET: usize = 64;

/// After draining the socket, how long to let the kernel queue more
/// datagrams before reading again, when the receive buffer is large (see
/// [`COALESCE_MIN_RCVBUF`]). Under load a datagram (~17 messages with the
/// kernel's default batch buffer) arrives every few tens of microseconds
/// and is decoded in less, so waking up per datagram made the thread sleep
/// and wake some 17k times a second at 300k packets/s, each a context switch
/// (in a VM, an exit). Sleeping this long between drains caps that at 2k/s
/// and adds at most this much latency.
pub const COALESCE: std::time::Duration = std::time::Duration::from_micros(500);

/// Receive buffer (as the kernel reports it, i.e. twice what was set) from
/// which [`COALESCE`] applies: 4 MiB holds the messages of 0.5 ms at well
/// over 10M packets/s, so the pause cannot overflow it.
pub const COALESCE_MIN_RCVBUF: usize = 4 << 20;

crate::packet::nflog_keys! {
    /// The output keys: ulogd 2.0.8's, in its order, with its IPFIX ids, and
    /// the VLAN id after them (ulogd has no key for it; CAPTURE gives the same).
    pub static KEYS: [KeyDef; NKEYS];
    K_VLAN = KeyDef::new("oob.vlan", KeyType::U16).ipfix(IETF, 58);
}

rulogd_plugin::plugin! {
    Input "NFLOG" (build): "packets logged by netfilter to an NFLOG group (nfnetlink_log)";
    options &OPTIONS;
    output &KEYS;
}

/// The counters of one instance, registered as `<instance> (NFLOG)`.
struct Stats {
    received: Counter,
    enobufs: Counter,
    bytes: Counter,
    malformed: Counter,
    seq_gaps: Counter,
    rcvbuf: Counter,
    /// Stops that unbound the group (the kernel sent its batch at once).
    stop_unbound: Counter,
    /// Stops whose unbind was refused (after `-u`), which waited for the
    /// kernel's flush timeout instead.
    stop_waited: Counter,
}

impl Stats {
    fn new(set: &StatSet) -> Stats {
        Stats {
            received: set.counter("received"),
            enobufs: set.counter("enobufs"),
            bytes: set.counter("bytes"),
            malformed: set.counter("malformed"),
            seq_gaps: set.counter("seq_gaps"),
            rcvbuf: set.gauge("rcvbuf"),
            stop_unbound: set.counter("stop_unbound"),
            stop_waited: set.counter("stop_waited"),
        }
    }
}

/// A running NFLOG input.
pub struct NflogInput {
    name: String,
    sock: NlSocket,
    buf: BytesMut,
    bufsize: usize,
    slots: [Option<Slot>; NKEYS],
    label: u8,
    /// `vlan=1`: `oob.vlan` is given.
    vlan: bool,
    seq_local: bool,
    last_seq: Option<u32>,
    stats: Stats,
    /// Growth of the receive buffer on ENOBUFS; an episode of loss ends
    /// once the socket has been drained.
    rcvbuf: RcvbufPolicy,
    malformed_warned: bool,
    truncated_warned: bool,
    /// The receive buffer is large enough to pause between drains.
    coalesce: bool,
    /// The group, unbound at stop.
    group: u16,
    /// The kernel's flush timeout in 1/100 s (0 = its default).
    qtimeout: u32,
    /// Sequence number of the unbind sent at stop, until answered.
    awaiting: Option<u32>,
    /// The kernel's answer (errno, 0 = done) to `awaiting`.
    ack: Option<i32>,
    /// `/proc/net/netfilter/nfnetlink_log`, opened before `-u` drops the
    /// right to, for the batch length at stop.
    proc_nflog: Option<std::fs::File>,
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Input>, BuildError> {
    let s = Settings::from_options(ctx.options)?;
    let mut sock = NlSocket::open(libc::NETLINK_NETFILTER)
        .map_err(|e| BuildError::io("NFLOG: cannot open netlink socket", e))?;
    configure_kernel(&mut sock, &s)?;
    let set = StatSet::new(format!("{} (NFLOG)", ctx.instance));
    ctx.shared.add_stats(set.clone());
    let mut inp = NflogInput::new(ctx.instance, &s, sock, &set);
    inp.proc_nflog = std::fs::File::open(stop::PROC_NFLOG).ok();
    Ok(Box::new(inp))
}

/// Fills `rec` from one packet with ulogd's validity rules; `now` supplies
/// the time when the kernel gave none (or gave second 0).
pub fn fill_record(
    rec: &mut Record,
    slots: &[Option<Slot>; NKEYS],
    p: &NflogPacket,
    label: u8,
    now: &mut impl FnMut() -> (u32, u32),
) {
    fill_shared(rec, slots, p, label, now);
    let s = slots;
    let hwlen = p.hwlen.unwrap_or(0);
    if hwlen > 0 {
        if let Some(h) = p.hwheader {
            rec.set_opt(s[K_RAW_MAC], Value::Raw(h));
        }
        rec.set_opt(s[K_RAW_MAC_LEN], Value::U16(hwlen));
        rec.set_opt(s[K_RAW_TYPE], Value::U16(p.hwtype.unwrap_or(0)));
    }
    if let Some(px) = p.prefix {
        rec.set_opt(s[K_PREFIX], Value::StrSpan(px));
    }
    if let Some(v) = p.seq {
        rec.set_opt(s[K_SEQ_LOCAL], Value::U32(v));
    }
    if let Some(v) = p.seq_global {
        rec.set_opt(s[K_SEQ_GLOBAL], Value::U32(v));
    }
    if let Some(v) = p.vlan {
        rec.set_opt(s[K_VLAN], Value::U16(v));
    }
}

impl NflogInput {
    /// An input reading from `sock`, already configured; counters go to `set`.
    pub fn new(name: &str, s: &Settings, sock: NlSocket, set: &StatSet) -> NflogInput {
        let stats = Stats::new(set);
        let actual = sock.rcvbuf().unwrap_or(0);
        stats.rcvbuf.set(actual as u64);
        NflogInput {
            name: name.to_string(),
            sock,
            buf: BytesMut::with_capacity(s.bufsize),
            bufsize: s.bufsize,
            // Until bind() says otherwise, every key is wanted.
            slots: std::array::from_fn(|i| Some(i as Slot)),
            label: s.label,
            vlan: s.vlan,
            seq_local: s.seq_local,
            last_seq: None,
            stats,
            rcvbuf: RcvbufPolicy::for_socket(Voice::Nflog, s.rcvbuf, actual, s.rcvbuf_max),
            malformed_warned: false,
            truncated_warned: false,
            coalesce: actual >= COALESCE_MIN_RCVBUF,
            group: s.group,
            qtimeout: s.qtimeout,
            awaiting: None,
            ack: None,
            proc_nflog: None,
        }
    }

    /// Decodes every message of one received chunk and emits its packets.
    fn process(&mut self, chunk: &Bytes, em: &mut dyn Emitter) {
        let mut received = 0u64;
        let mut gaps = 0u64;
        let mut now_cache = None;
        let mut now = || *now_cache.get_or_insert_with(now_sec_usec);
        for m in messages(chunk) {
            let p = match m {
                Ok(Message::Packet(p)) => p,
                Ok(Message::Error { errno, seq }) if self.awaiting == Some(seq) => {
                    self.awaiting = None;
                    self.ack = Some(errno);
                    continue;
                }
                Ok(Message::Error { errno, .. }) if errno != 0 => {
                    log::debug!("{} (NFLOG): kernel reported error {errno}", self.name);
                    continue;
                }
                Ok(_) => continue,
                Err(e) => {
                    let (c, w) = (&self.stats.malformed, &mut self.malformed_warned);
                    note_malformed(c, w, &self.name, "NFLOG", &e);
                    continue;
                }
            };
            received += 1;
            if self.seq_local {
                if let Some(seq) = p.seq {
                    if let Some(last) = self.last_seq {
                        let d = seq.wrapping_sub(last);
                        // A step back (the group was rebound) is not a loss.
                        if d > 1 && d < 1 << 31 {
                            gaps += u64::from(d - 1);
                        }
                    }
                    self.last_seq = Some(seq);
                }
            }
            let rec = em.record();
            share_chunk(rec, chunk);
            fill_record(rec, &self.slots, &p, self.label, &mut now);
            em.emit();
        }
        self.stats.received.add(received);
        if gaps != 0 {
            self.stats.seq_gaps.add(gaps);
        }
    }

    /// The kernel dropped messages because the socket buffer was full.
    fn on_enobufs(&mut self) {
        let st = &self.stats;
        let grown = self
            .rcvbuf
            .on_enobufs(&self.name, Some(&self.sock), &st.enobufs, &st.rcvbuf);
        if let Some(actual) = grown {
            self.coalesce = actual >= COALESCE_MIN_RCVBUF;
        }
    }
}

impl Input for NflogInput {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        bind_slots(&mut self.slots, b);
        // Without vlan=1 the key is never set: a JSON output (which prints
        // every key it is given) then writes the line ulogd2 writes.
        if !self.vlan {
            self.slots[K_VLAN] = None;
        }
        Ok(())
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.sock.raw_fd())
    }

    fn read(&mut self, em: &mut dyn Emitter) -> io::Result<ReadStatus> {
        // Datagrams received since the socket was last found empty.
        let mut got = false;
        for _ in 0..RECV_BUDGET {
            match self.sock.recv_chunk(&mut self.buf, self.bufsize)? {
                Recv::Chunk { chunk, truncated } => {
                    got = true;
                    self.stats.bytes.add(chunk.len() as u64);
                    if truncated {
                        // The cut-off message fails its length check and is
                        // counted as malformed; the ones before it are fine.
                        let w = &mut self.truncated_warned;
                        warn_truncated(w, &self.name, "NFLOG", self.bufsize);
                    }
                    self.process(&chunk, em);
                    em.record().release_buf();
                }
                Recv::Empty => {
                    self.rcvbuf.recovered();
                    if got && self.coalesce {
                        // Busy: let a few datagrams gather, then go on.
                        got = false;
                        std::thread::sleep(COALESCE);
                        continue;
                    }
                    return Ok(ReadStatus::Idle);
                }
                Recv::Interrupted => {}
                Recv::Overrun => self.on_enobufs(),
            }
        }
        Ok(ReadStatus::More)
    }

    /// Unbinds the group, so the kernel sends its pending batch, and reads
    /// until that batch is in; after `-u` (unbind refused) reads until the
    /// kernel's flush timeout has passed.
    fn stop(&mut self, em: &mut dyn Emitter) {
        self.stop_and_drain(em);
    }
}
