//! NFQUEUE: packets handed to userspace by netfilter (`nft ... queue num N`,
//! iptables `-j NFQUEUE`), logged, then let through. ulogd2 has no such
//! input; rulogd's records carry NFLOG's keys (so any stack written for
//! NFLOG works unchanged) plus `oob.queue` and `oob.packet_id`.
//!
//! It uses the crate's netlink layer rather than the `nfq` crate: one
//! netlink parser for NFLOG and NFQUEUE, records that point into the
//! receive buffer instead of an owned copy per packet, and batch verdicts
//! (`NFQNL_MSG_VERDICT_BATCH`): one message accepts every packet of a
//! `read()` call, where `nfq` sends one verdict per packet.
//!
//! A packet's verdict is sent after its record went through every stack
//! (filters and output rendering run inline and never wait on I/O), at the
//! end of each `read()` call, so a packet is held for at most one batch.

use crate::common::{bind_slots, note_malformed, share_chunk, warn_truncated};
use crate::packet::fill_shared;
use bytes::{Bytes, BytesMut};
use rulogd_netlink::enobufs::{RcvbufPolicy, Voice};
use rulogd_netlink::nfqueue::{
    config_request, messages, verdict_batch, Config, QueueMessage, QueuePacket, NF_ACCEPT,
};
use rulogd_netlink::socket::{NlSocket, Recv};
use rulogd_plugin::now_sec_usec;
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Counter, Emitter, Input, KeyDef, KeyType, ReadStatus, Record,
    Slot, StatSet, Value,
};
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

mod setup;
#[cfg(test)]
mod tests;

pub use setup::{Settings, OPTIONS};

/// Receives per `read()` call; the verdict for all of them goes out at the
/// end, in one message.
pub const RECV_BUDGET: usize = 64;

/// Longest time `stop` reads packets already queued to the socket: under a
/// flood without fail_open the socket never empties.
const STOP_DRAIN: Duration = Duration::from_millis(500);

crate::packet::nflog_keys! {
    /// The output keys: NFLOG's, in its order, then the queue's own. The
    /// sequence numbers and `oob.prefix` have no NFQUEUE counterpart and are
    /// never set; `raw.type` neither (the kernel does not send the device type).
    pub static KEYS: [KeyDef; NKEYS];
    K_QUEUE = KeyDef::new("oob.queue", KeyType::U16);
    K_PACKET_ID = KeyDef::new("oob.packet_id", KeyType::U32);
}

rulogd_plugin::plugin! {
    Input "NFQUEUE" (build): "packets queued by netfilter (nfnetlink_queue), logged then accepted";
    options &OPTIONS;
    output &KEYS;
}

/// The counters of one instance, registered as `<instance> (NFQUEUE)`.
struct Stats {
    received: Counter,
    bytes: Counter,
    enobufs: Counter,
    malformed: Counter,
    verdicts: Counter,
    verdict_errors: Counter,
    rcvbuf: Counter,
}

impl Stats {
    fn new(set: &StatSet) -> Stats {
        Stats {
            received: set.counter("received"),
            bytes: set.counter("bytes"),
            enobufs: set.counter("enobufs"),
            malformed: set.counter("malformed"),
            verdicts: set.counter("verdicts"),
            verdict_errors: set.counter("verdict_errors"),
            rcvbuf: set.gauge("rcvbuf"),
        }
    }
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Input>, BuildError> {
    let s = Settings::from_options(ctx.options)?;
    let mut sock = NlSocket::open(libc::NETLINK_NETFILTER)
        .map_err(|e| BuildError::io("NFQUEUE: cannot open netlink socket", e))?;
    setup::configure_kernel(&mut sock, &s)?;
    let set = StatSet::new(format!("{} (NFQUEUE)", ctx.instance));
    ctx.shared.add_stats(set.clone());
    Ok(Box::new(NfqueueInput::new(ctx.instance, &s, sock, &set)))
}

/// Whether packet id `a` comes after `b`, across wrap-around (the kernel's
/// own comparison for batch verdicts).
fn id_after(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) < 0
}

/// Fills `rec` from one queued packet, with NFLOG's validity rules where
/// the keys are shared; `now` supplies the time when the kernel gave none.
pub fn fill_record(
    rec: &mut Record,
    slots: &[Option<Slot>; NKEYS],
    p: &QueuePacket,
    label: u8,
    now: &mut impl FnMut() -> (u32, u32),
) {
    fill_shared(rec, slots, p, label, now);
    let s = slots;
    if let Some(h) = p.l2hdr.filter(|h| h.len > 0) {
        rec.set_opt(s[K_RAW_MAC], Value::Raw(h));
        rec.set_opt(s[K_RAW_MAC_LEN], Value::U16(h.len as u16));
    }
    rec.set_opt(s[K_QUEUE], Value::U16(p.queue));
    rec.set_opt(s[K_PACKET_ID], Value::U32(p.id));
}

/// A running NFQUEUE input.
pub struct NfqueueInput {
    name: String,
    sock: NlSocket,
    queue: u16,
    buf: BytesMut,
    bufsize: usize,
    slots: [Option<Slot>; NKEYS],
    label: u8,
    mark: Option<u32>,
    fail_open: bool,
    /// Highest packet id received and not yet given a verdict.
    pending: Option<u32>,
    /// Highest packet id ever received.
    last_id: Option<u32>,
    /// The verdict message, rebuilt in place for every batch.
    out: Vec<u8>,
    stats: Stats,
    /// Growth of the receive buffer on ENOBUFS.
    rcvbuf: RcvbufPolicy,
    malformed_warned: bool,
    truncated_warned: bool,
    verdict_warned: bool,
    /// `stop` has let go of the queue.
    stopped: bool,
}

impl NfqueueInput {
    /// An input reading from `sock`, already bound; counters go to `set`.
    pub fn new(name: &str, s: &Settings, sock: NlSocket, set: &StatSet) -> NfqueueInput {
        let stats = Stats::new(set);
        let actual = sock.rcvbuf().unwrap_or(0);
        stats.rcvbuf.set(actual as u64);
        NfqueueInput {
            name: name.to_string(),
            sock,
            queue: s.queue,
            buf: BytesMut::with_capacity(s.bufsize),
            bufsize: s.bufsize,
            slots: std::array::from_fn(|i| Some(i as Slot)),
            label: s.label,
            mark: s.mark,
            fail_open: s.fail_open,
            pending: None,
            last_id: None,
            out: Vec::with_capacity(64),
            stats,
            rcvbuf: RcvbufPolicy::for_socket(
                Voice::Nfqueue {
                    fail_open: s.fail_open,
                },
                s.rcvbuf,
                actual,
                s.rcvbuf_max,
            ),
            malformed_warned: false,
            truncated_warned: false,
            verdict_warned: false,
            stopped: false,
        }
    }

    /// Remembers `id` as needing a verdict.
    fn note_id(&mut self, id: u32) {
        if self.pending.is_none_or(|p| id_after(id, p)) {
            self.pending = Some(id);
        }
        if self.last_id.is_none_or(|p| id_after(id, p)) {
            self.last_id = Some(id);
        }
    }

    /// Decodes every message of one datagram and emits its packets.
    fn process(&mut self, chunk: &Bytes, em: &mut dyn Emitter) {
        let mut now_cache = None;
        let mut now = || *now_cache.get_or_insert_with(now_sec_usec);
        for m in messages(chunk) {
            match m {
                Ok(QueueMessage::Packet(p)) => {
                    self.stats.received.inc();
                    let rec = em.record();
                    share_chunk(rec, chunk);
                    fill_record(rec, &self.slots, &p, self.label, &mut now);
                    em.emit();
                    self.note_id(p.id);
                }
                // A verdict naming no queued packet (ENOENT) is harmless.
                Ok(QueueMessage::Error { errno, .. }) if errno != 0 => {
                    self.stats.verdict_errors.inc();
                    let n = self.stats.verdict_errors.get();
                    let e = io::Error::from_raw_os_error(errno.abs());
                    // ENOENT (a verdict for an id already answered) is
                    // harmless; anything else leaves packets waiting.
                    if errno.abs() != libc::ENOENT && n.is_power_of_two() {
                        log::error!(
                            "{} (NFQUEUE): the kernel refused a verdict ({n} so far): {e}; queued packets wait for it",
                            self.name
                        );
                    } else {
                        log::debug!("{} (NFQUEUE): kernel reported error {errno}", self.name);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    // No packet id to answer: the next batch verdict, which
                    // covers every earlier id, lets the packet go.
                    let (c, w) = (&self.stats.malformed, &mut self.malformed_warned);
                    note_malformed(c, w, &self.name, "NFQUEUE", &e);
                }
            }
        }
    }

    /// Sends the verdict for every packet up to the highest pending id.
    fn flush_verdict(&mut self) {
        let Some(id) = self.pending else { return };
        self.out.clear();
        let seq = self.sock.next_seq();
        verdict_batch(&mut self.out, seq, self.queue, id, NF_ACCEPT, self.mark);
        match self.sock.send(&self.out) {
            Ok(()) => {
                self.pending = None;
                self.stats.verdicts.inc();
                self.verdict_warned = false;
            }
            Err(e) => {
                // Kept pending: retried after the next read or tick.
                self.stats.verdict_errors.inc();
                if !self.verdict_warned {
                    self.verdict_warned = true;
                    log::error!(
                        "{} (NFQUEUE): cannot send verdict for queue {}: {e}",
                        self.name,
                        self.queue
                    );
                }
            }
        }
    }

    /// The kernel could not queue messages to the socket: with fail_open it
    /// accepted those packets unlogged, else it dropped them.
    fn on_enobufs(&mut self) {
        let st = &self.stats;
        self.rcvbuf
            .on_enobufs(&self.name, Some(&self.sock), &st.enobufs, &st.rcvbuf);
    }
}

impl Input for NfqueueInput {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        bind_slots(&mut self.slots, b);
        Ok(())
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.sock.raw_fd())
    }

    /// Retries a verdict whose sending failed, even if no packet comes.
    fn interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(100))
    }

    fn tick(&mut self, _now: Instant, _em: &mut dyn Emitter) {
        self.flush_verdict();
    }

    /// Logs and answers what the socket holds, then lets go of the queue.
    fn stop(&mut self, em: &mut dyn Emitter) {
        self.release(Some(em));
    }

    fn read(&mut self, em: &mut dyn Emitter) -> io::Result<ReadStatus> {
        let mut status = ReadStatus::More;
        for _ in 0..RECV_BUDGET {
            match self.sock.recv_chunk(&mut self.buf, self.bufsize) {
                Ok(Recv::Chunk { chunk, truncated }) => {
                    self.stats.bytes.add(chunk.len() as u64);
                    if truncated {
                        let w = &mut self.truncated_warned;
                        warn_truncated(w, &self.name, "NFQUEUE", self.bufsize);
                    }
                    self.process(&chunk, em);
                    em.record().release_buf();
                }
                Ok(Recv::Empty) => {
                    self.rcvbuf.recovered();
                    status = ReadStatus::Idle;
                    break;
                }
                Ok(Recv::Interrupted) => {}
                Ok(Recv::Overrun) => self.on_enobufs(),
                Err(e) => {
                    self.flush_verdict();
                    return Err(e);
                }
            }
        }
        self.flush_verdict();
        Ok(status)
    }
}

impl NfqueueInput {
    /// Lets go of the queue without dropping packets: the kernel drops what
    /// is still queued when the socket closes. With fail_open, a queue length
    /// of 0 makes it accept new packets instead of queueing them; then one
    /// batch verdict accepts everything still held (ids up to 2^30 past the
    /// last one seen, far more than any queue holds, yet close enough that
    /// the kernel's wrap-around comparison still counts earlier ids in).
    fn release(&mut self, em: Option<&mut dyn Emitter>) {
        self.stopped = true;
        if self.fail_open {
            let seq = self.sock.next_seq();
            self.out.clear();
            config_request(&mut self.out, seq, self.queue, &[Config::MaxLen(0)]);
            if let Err(e) = self.sock.send(&self.out) {
                log::debug!("{} (NFQUEUE): cannot shrink queue at stop: {e}", self.name);
            }
        }
        if let Some(em) = em {
            // Packets already in the socket are logged and answered like any
            // other; only those queued after this get the blanket verdict.
            let until = Instant::now() + STOP_DRAIN;
            while Instant::now() < until {
                match self.read(em) {
                    Ok(ReadStatus::More) => {}
                    Ok(ReadStatus::Idle | ReadStatus::Finished) => break,
                    Err(e) => {
                        log::error!("{} (NFQUEUE): read error while stopping: {e}", self.name);
                        break;
                    }
                }
            }
        }
        let last = self.last_id.unwrap_or(0);
        self.pending = Some(last.wrapping_add(1 << 30));
        self.flush_verdict();
    }
}

impl Drop for NfqueueInput {
    fn drop(&mut self) {
        if !self.stopped {
            self.release(None);
        }
    }
}
