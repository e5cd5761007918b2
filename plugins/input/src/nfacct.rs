//! NFACCT: the counters of nfacct objects (`nfacct add NAME`, counted by
//! iptables `-m nfacct --nfacct-name NAME`), polled every `pollinterval`
//! seconds as ulogd's `ulogd_inpflow_NFACCT` does: one record per object.
//!
//! With `zerocounter=1` (the default) each poll reads and resets the
//! counters in one request, so records carry what was counted since the
//! previous poll. The request goes out on the timer; the replies are read
//! like any other input's messages, so a slow dump never blocks the thread.

use crate::common::bind_slots;
use bytes::{Bytes, BytesMut};
use rulogd_netlink::nfacct::{dump_request, messages, AcctObject, Message};
use rulogd_netlink::socket::{NlSocket, Recv};
use rulogd_plugin::now_sec_usec;
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Counter, Emitter, Input, KeyDef, KeyType, OptionDef, ReadStatus,
    Record, Signal, Slot, StatSet, Value,
};
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Receives per `read()` call before yielding to the core.
const RECV_BUDGET: usize = 64;
/// Dump datagrams are at most a few pages.
const BUFSIZE: usize = 65536;

/// The options, in ulogd's order.
pub static OPTIONS: [OptionDef; 3] = [
    OptionDef::int("pollinterval", "0", "seconds between two reads of the counters (must be set, > 0)").range(1, u32::MAX as i64).mandatory(),
    OptionDef::int("zerocounter", "1", "reset the counters at each read, so records carry the counts since the previous one (0: totals)").flag(),
    OptionDef::int("timestamp", "0", "set oob.time.sec/usec to the time the counters were asked for").flag(),
];

rulogd_plugin::key_table! {
    /// The output keys, in ulogd's order.
    pub static KEYS: [KeyDef; NKEYS];
    K_NAME = KeyDef::new("sum.name", KeyType::String);
    K_PKTS = KeyDef::new("sum.pkts", KeyType::U64);
    K_BYTES = KeyDef::new("sum.bytes", KeyType::U64);
    K_SUM = KeyDef::new("sum", KeyType::Raw);
    K_SEC = KeyDef::new("oob.time.sec", KeyType::U32);
    K_USEC = KeyDef::new("oob.time.usec", KeyType::U32);
}

rulogd_plugin::plugin! {
    Input "NFACCT" (build): "nfacct accounting objects, polled (nfnetlink_acct)";
    options &OPTIONS;
    output &KEYS;
}

/// Validated options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Seconds between polls.
    pub pollinterval: u32,
    /// Read and reset.
    pub zerocounter: bool,
    /// Set `oob.time.*`.
    pub timestamp: bool,
}

impl Settings {
    /// Reads and checks the options.
    pub fn from_options(o: &rulogd_plugin::Options) -> Result<Settings, BuildError> {
        let p = o.int("pollinterval");
        if p <= 0 || p > u32::MAX as i64 {
            return Err(BuildError::option(
                "pollinterval",
                "you have to set pollinterval (seconds, > 0)",
            ));
        }
        Ok(Settings {
            pollinterval: p as u32,
            zerocounter: o.int("zerocounter") != 0,
            timestamp: o.int("timestamp") != 0,
        })
    }
}

struct Stats {
    polls: Counter,
    objects: Counter,
    malformed: Counter,
    errors: Counter,
}

/// A running NFACCT input.
pub struct NfacctInput {
    name: String,
    s: Settings,
    sock: NlSocket,
    buf: BytesMut,
    req: Vec<u8>,
    slots: [Option<Slot>; NKEYS],
    /// When the last request was sent (`oob.time.*`).
    asked: (u32, u32),
    stats: Stats,
    warned: bool,
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Input>, BuildError> {
    let s = Settings::from_options(ctx.options)?;
    let sock = NlSocket::open(libc::NETLINK_NETFILTER)
        .map_err(|e| BuildError::io("NFACCT: cannot open netlink socket", e))?;
    let set = StatSet::new(format!("{} (NFACCT)", ctx.instance));
    ctx.shared.add_stats(set.clone());
    Ok(Box::new(NfacctInput::new(ctx.instance, s, sock, &set)))
}

/// Fills `rec` with one object; `asked` is set as `oob.time.*` when given.
pub fn fill_record(
    rec: &mut Record,
    s: &[Option<Slot>; NKEYS],
    o: &AcctObject,
    asked: Option<(u32, u32)>,
) {
    if let Some(n) = o.name {
        rec.set_opt(s[K_NAME], Value::StrSpan(n));
    }
    // libnetfilter_acct reads an absent counter as 0.
    rec.set_opt(s[K_PKTS], Value::U64(o.pkts.unwrap_or(0)));
    rec.set_opt(s[K_BYTES], Value::U64(o.bytes.unwrap_or(0)));
    rec.set_opt(s[K_SUM], Value::Raw(o.attrs));
    if let Some((sec, usec)) = asked {
        rec.set_opt(s[K_SEC], Value::U32(sec));
        rec.set_opt(s[K_USEC], Value::U32(usec));
    }
}

impl NfacctInput {
    /// An input polling over `sock`; counters go to `set`.
    pub fn new(name: &str, s: Settings, sock: NlSocket, set: &StatSet) -> NfacctInput {
        NfacctInput {
            name: name.to_string(),
            s,
            sock,
            buf: BytesMut::with_capacity(BUFSIZE),
            req: Vec::with_capacity(32),
            slots: std::array::from_fn(|i| Some(i as Slot)),
            asked: (0, 0),
            stats: Stats {
                polls: set.counter("polls"),
                objects: set.counter("objects"),
                malformed: set.counter("malformed"),
                errors: set.counter("errors"),
            },
            warned: false,
        }
    }

    /// Asks the kernel for every object (and a reset with `zerocounter`).
    pub fn poll(&mut self) {
        let seq = self.sock.next_seq();
        self.req.clear();
        dump_request(&mut self.req, seq, self.s.zerocounter);
        match self.sock.send(&self.req) {
            Ok(()) => {
                // ulogd takes the time after sending.
                self.asked = now_sec_usec();
                self.stats.polls.inc();
            }
            Err(e) => {
                self.stats.errors.inc();
                log::error!("{} (NFACCT): cannot send netlink message: {e}", self.name);
            }
        }
    }

    fn process(&mut self, chunk: &Bytes, em: &mut dyn Emitter) {
        let asked = self.s.timestamp.then_some(self.asked);
        for m in messages(chunk) {
            match m {
                Ok((Message::Object(o), _)) => {
                    let rec = em.record();
                    rec.set_buf(chunk.clone());
                    fill_record(rec, &self.slots, &o, asked);
                    em.emit();
                    self.stats.objects.inc();
                }
                Ok((Message::Error { errno }, _)) if errno != 0 => {
                    self.stats.errors.inc();
                    log::error!(
                        "{} (NFACCT): the kernel refused the request: {}",
                        self.name,
                        io::Error::from_raw_os_error(errno)
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    self.stats.malformed.inc();
                    if !self.warned {
                        self.warned = true;
                        log::warn!("{} (NFACCT): error parsing nfacct message: {e}", self.name);
                    }
                }
            }
        }
    }
}

impl Input for NfacctInput {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        bind_slots(&mut self.slots, b);
        Ok(())
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.sock.raw_fd())
    }

    fn interval(&self) -> Option<Duration> {
        Some(Duration::from_secs(u64::from(self.s.pollinterval)))
    }

    fn read(&mut self, em: &mut dyn Emitter) -> io::Result<ReadStatus> {
        for _ in 0..RECV_BUDGET {
            match self.sock.recv_chunk(&mut self.buf, BUFSIZE)? {
                Recv::Chunk { chunk, .. } => {
                    self.process(&chunk, em);
                    em.record().release_buf();
                }
                Recv::Empty => return Ok(ReadStatus::Idle),
                Recv::Interrupted => {}
                Recv::Overrun => return Err(io::Error::from_raw_os_error(libc::ENOBUFS)),
            }
        }
        Ok(ReadStatus::More)
    }

    fn tick(&mut self, _now: Instant, _em: &mut dyn Emitter) {
        self.poll();
    }

    fn signal(&mut self, sig: Signal, _em: &mut dyn Emitter) {
        // An extra poll now; the timer keeps its schedule, as in ulogd.
        if sig == Signal::Usr2 {
            self.poll();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{dgram_pair, options, send};
    use rulogd_netlink::nfacct::{attr, MSG_NEW};
    use rulogd_netlink::{finish_msg, put_attr, start_msg, NLMSG_DONE};
    use std::os::fd::OwnedFd;

    fn object(out: &mut Vec<u8>, name: &[u8], pkts: u64, bytes: u64) {
        let start = start_msg(out, MSG_NEW, 0x2, 1);
        out.extend_from_slice(&[0, 0, 0, 0]);
        let mut n = name.to_vec();
        n.push(0);
        put_attr(out, attr::NAME, &n);
        put_attr(out, attr::PKTS, &pkts.to_be_bytes());
        put_attr(out, attr::BYTES, &bytes.to_be_bytes());
        finish_msg(out, start);
    }

    struct Collect(Record, Vec<(Vec<u8>, u64, u64, Option<u64>)>, Vec<Vec<u8>>);

    impl Emitter for Collect {
        fn record(&mut self) -> &mut Record {
            &mut self.0
        }
        fn emit(&mut self) {
            let r = &self.0;
            let name = r
                .get_bytes(Some(K_NAME as Slot))
                .unwrap_or_default()
                .to_vec();
            let g = |k: usize| r.get_u64(Some(k as Slot));
            self.1
                .push((name, g(K_PKTS).unwrap(), g(K_BYTES).unwrap(), g(K_SEC)));
            let b = r.buf().to_vec();
            if self.2.last() != Some(&b) {
                self.2.push(b);
            }
            self.0.clear();
        }
    }

    fn settings(opts: &[(&str, &str)]) -> Result<Settings, BuildError> {
        Settings::from_options(&options(&OPTIONS, opts))
    }

    /// A datagram socketpair: our end goes to the input, the other feeds it.
    fn pair(s: Settings) -> (NfacctInput, OwnedFd) {
        let (a, b) = dgram_pair();
        let sock = NlSocket::from_fd(a);
        (NfacctInput::new("acct1", s, sock, &StatSet::new("t")), b)
    }

    #[test]
    fn one_record_per_object_with_the_poll_time() {
        let (mut inp, peer) = pair(settings(&[("pollinterval", "2"), ("timestamp", "1")]).unwrap());
        assert_eq!(inp.interval(), Some(Duration::from_secs(2)));
        inp.asked = (1_700_000_000, 5);
        let mut d = Vec::new();
        object(&mut d, b"ulogtest_a", 3, 234);
        object(&mut d, b"idle", 0, 0);
        send(&peer, &d);
        let mut done = Vec::new();
        let st = start_msg(&mut done, NLMSG_DONE, 2, 1);
        done.extend_from_slice(&[0; 4]);
        finish_msg(&mut done, st);
        send(&peer, &done);
        // Garbage: counted, no record, no panic.
        send(&peer, &[1, 2, 3]);
        let mut em = Collect(Record::with_slots(NKEYS), Vec::new(), Vec::new());
        while inp.read(&mut em).unwrap() == ReadStatus::More {}
        assert_eq!(
            em.1,
            vec![
                (b"ulogtest_a".to_vec(), 3, 234, Some(1_700_000_000)),
                (b"idle".to_vec(), 0, 0, Some(1_700_000_000)),
            ]
        );
        assert_eq!(inp.stats.malformed.get(), 1);
        // timestamp=0: no oob.time.
        let (mut inp, peer) = pair(settings(&[("pollinterval", "1")]).unwrap());
        send(&peer, &d);
        let mut em = Collect(Record::with_slots(NKEYS), Vec::new(), Vec::new());
        while inp.read(&mut em).unwrap() == ReadStatus::More {}
        assert_eq!(em.1[0].3, None);
    }

    #[test]
    fn pollinterval_is_required() {
        let e = settings(&[]).unwrap_err();
        assert!(e.to_string().contains("pollinterval"), "{e}");
        assert!(settings(&[("pollinterval", "-1")]).is_err());
        let s = settings(&[("pollinterval", "10"), ("zerocounter", "0")]).unwrap();
        assert!(!s.zerocounter && !s.timestamp);
    }

    /// A real nfacct object counted by an iptables rule in a private
    /// namespace (root only); `RULOGD_NFACCT_CORPUS=<dir>` saves the replies.
    #[test]
    fn kernel_counts_and_resets() {
        use crate::nfct::kernel_test::{enabled, run, Netns};
        if !enabled() {
            return;
        }
        let ns = Netns::new("acct");
        let exec = |args: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", &ns.0];
            v.extend_from_slice(args);
            run(&v, None);
        };
        exec(&["nfacct", "add", "rl_a"]);
        exec(&[
            "iptables",
            "-A",
            "INPUT",
            "-p",
            "udp",
            "--dport",
            "9999",
            "-m",
            "nfacct",
            "--nfacct-name",
            "rl_a",
        ]);
        let s = settings(&[("pollinterval", "1"), ("timestamp", "1")]).unwrap();
        let mut inp = ns.in_ns(|| {
            let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            for _ in 0..3 {
                c.send_to(&[0u8; 30], "127.0.0.1:9999").unwrap();
            }
            let sock = NlSocket::open(libc::NETLINK_NETFILTER).unwrap();
            NfacctInput::new("acct1", s, sock, &StatSet::new("t"))
        });
        let mut em = Collect(Record::with_slots(NKEYS), Vec::new(), Vec::new());
        for round in 0..2 {
            inp.poll();
            let deadline = Instant::now() + Duration::from_secs(5);
            while em.1.len() <= round && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
                let _ = inp.read(&mut em);
            }
        }
        // 3 x (20 + 8 + 30) bytes, then zero after the reset.
        assert_eq!(em.1[0].0, b"rl_a");
        assert_eq!((em.1[0].1, em.1[0].2), (3, 174));
        assert_eq!((em.1[1].1, em.1[1].2), (0, 0));
        assert!(em.1[0].3.is_some());
        if let Ok(dir) = std::env::var("RULOGD_NFACCT_CORPUS") {
            for (i, c) in em.2.iter().enumerate() {
                let p = std::path::Path::new(&dir).join(format!("kernel-poll-{i}.bin"));
                std::fs::write(p, c).unwrap();
            }
        }
    }

    /// The fuzz corpus parses without panics; seeds parse cleanly.
    #[test]
    fn replays_the_fuzz_corpus() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/corpus/nfacct");
        if let Ok(seeds) = std::env::var("RULOGD_NFACCT_SEEDS") {
            let mut d = Vec::new();
            object(&mut d, b"ulogtest_a", 3, 234);
            object(&mut d, b"b", u64::MAX, 1);
            std::fs::write(std::path::Path::new(&seeds).join("hand-two-objects.bin"), d).unwrap();
        }
        let rd = std::fs::read_dir(&dir)
            .unwrap_or_else(|_| panic!("corpus missing at {}", dir.display()));
        let mut n = 0;
        for e in rd.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let mut rec = Record::with_slots(NKEYS);
            rec.set_buf(Bytes::from(data.clone()));
            let slots = std::array::from_fn(|i| Some(i as Slot));
            for m in messages(&data) {
                if name.starts_with("hand-") || name.starts_with("kernel-") {
                    assert!(m.is_ok(), "{name}: {m:?}");
                }
                if let Ok((Message::Object(o), _)) = m {
                    fill_record(&mut rec, &slots, &o, None);
                    assert!(rec.get_bytes(Some(K_SUM as Slot)).is_some());
                    rec.clear();
                }
            }
            n += 1;
        }
        assert!(n > 0, "empty corpus at {}", dir.display());
    }
}
