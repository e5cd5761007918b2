//! CAPTURE: packets read from a capture file (pcap or pcapng, as tcpdump,
//! tshark or dumpcap write them), as the sensor's input. ulogd2 has no such
//! input (its PCAP plugin is an output, hence the name).
//!
//! The records carry the keys NFLOG gives for the same packet (raw.pkt,
//! raw.mac, oob.family, oob.protocol, oob.time.* …), so BASE, HWHDR, IP2STR
//! and every output take them unchanged. The file is read in large chunks
//! and every value is a span into the chunk; the packets' own timestamps are
//! the records' times. At the end of the file the input is finished: once
//! every input is, the daemon drains its outputs and exits 0, as
//! `softflowd -r` or `argus -r` do.

use crate::common::{bind_slots, share_chunk};
use bytes::{Bytes, BytesMut};
use rulogd_capture::{decode, FileError, Next, Parser};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Counter, Emitter, Input, KeyDef, KeyType, OptionDef, ReadStatus,
    Slot, Span, StatSet, Value,
};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;

/// Bytes read from the file at a time: large enough that a read(2) costs
/// little per packet, small enough to stay in cache-friendly reach.
const CHUNK: usize = 1 << 20;

/// The options.
pub static OPTIONS: [OptionDef; 7] = [
    OptionDef::str(
        "file",
        "",
        "a pcap or pcapng file to read (this or interface)",
    ),
    OptionDef::str(
        "interface",
        "",
        "the interface to capture on live, `any` for all (this or file)",
    ),
    OptionDef::int(
        "promisc",
        "1",
        "put the interface in promiscuous mode (live)",
    )
    .flag(),
    OptionDef::int("snaplen", "65535", "bytes kept of each packet (live)").range(64, 262_144),
    OptionDef::int(
        "buffer_size",
        "33554432",
        "bytes of the kernel's capture ring (live)",
    )
    .range(65_536, 1 << 30),
    OptionDef::int(
        "read_timeout",
        "100",
        "longest wait in ms before captured packets are handed over (live)",
    )
    .range(1, 1000),
    OptionDef::str(
        "filter",
        "",
        "a BPF filter in tcpdump's syntax (live), e.g. \"not port 22\"",
    ),
];

rulogd_plugin::key_table! {
    /// The output keys: NFLOG's names for the same facts.
    pub static KEYS: [KeyDef; NKEYS];
    K_MAC = KeyDef::new("raw.mac", KeyType::Raw);
    K_PKT = KeyDef::new("raw.pkt", KeyType::Raw);
    K_PKTLEN = KeyDef::new("raw.pktlen", KeyType::U32);
    K_PKTCOUNT = KeyDef::new("raw.pktcount", KeyType::U32);
    K_SEC = KeyDef::new("oob.time.sec", KeyType::U32);
    K_USEC = KeyDef::new("oob.time.usec", KeyType::U32);
    K_IFINDEX_IN = KeyDef::new("oob.ifindex_in", KeyType::U32);
    K_MAC_LEN = KeyDef::new("raw.mac_len", KeyType::U16);
    K_FAMILY = KeyDef::new("oob.family", KeyType::U8);
    K_PROTOCOL = KeyDef::new("oob.protocol", KeyType::U16);
    K_TYPE = KeyDef::new("raw.type", KeyType::U16);
    // The outermost 802.1Q/802.1ad tag's id (QinQ: the service tag); NFLOG
    // gives the same key for bridged packets.
    K_VLAN = KeyDef::new("oob.vlan", KeyType::U16).ipfix(0, 58);
}

rulogd_plugin::plugin! {
    Input "CAPTURE" (build): "packets read from a pcap or pcapng capture file (the sensor's input)";
    options &OPTIONS;
    output &KEYS;
}

struct Stats {
    received: Counter,
    bytes: Counter,
    unknown_link: Counter,
    /// Live: packets the kernel's ring dropped (pcap_stats' ps_drop).
    kernel_drops: Counter,
    /// Live: packets the interface dropped (ps_ifdrop).
    if_drops: Counter,
}

/// Where the packets come from.
enum Source {
    File {
        file: File,
        parser: Parser,
        /// Unparsed bytes: a partial record carried over from the last chunk.
        buf: BytesMut,
    },
    Live(live::LiveSource),
}

/// A capture being read.
pub struct CaptureInput {
    src: Source,
    out: Out,
}

/// What turns packets into records: the slots, the counters, the names.
struct Out {
    name: String,
    /// The file or the interface, for messages.
    path: PathBuf,
    slots: [Option<Slot>; NKEYS],
    stats: Stats,
    unknown_warned: bool,
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Input>, BuildError> {
    let o = ctx.options;
    let (file, iface) = (o.str("file"), o.str("interface"));
    let (path, src) = match (file.is_empty(), iface.is_empty()) {
        (false, true) => (PathBuf::from(file), open_file(PathBuf::from(file))?),
        (true, false) => (PathBuf::from(iface), Source::Live(live::open(ctx)?)),
        _ => {
            return Err(BuildError::option(
                "file",
                "CAPTURE needs one of file=\"/path/to/capture.pcap\" or interface=\"eth1\"",
            ))
        }
    };
    let set = StatSet::new(format!("{} (CAPTURE)", ctx.instance));
    let stats = Stats {
        received: set.counter("received"),
        bytes: set.counter("bytes"),
        unknown_link: set.counter("unknown_link"),
        kernel_drops: set.counter("kernel_drops"),
        if_drops: set.counter("if_drops"),
    };
    ctx.shared.add_stats(set);
    Ok(Box::new(CaptureInput {
        src,
        out: Out {
            name: ctx.instance.to_string(),
            path,
            slots: std::array::from_fn(|i| Some(i as Slot)),
            stats,
            unknown_warned: false,
        },
    }))
}

fn open_file(path: PathBuf) -> Result<Source, BuildError> {
    let mut file = File::open(&path)
        .map_err(|e| BuildError::io(format!("CAPTURE: cannot open {}", path.display()), e))?;
    // The header is read now, so a file that is not a capture stops the start.
    let mut buf = BytesMut::with_capacity(CHUNK);
    let parser = loop {
        match Parser::start(&buf) {
            Ok(Some((p, used))) => {
                let _ = buf.split_to(used);
                break p;
            }
            Ok(None) => {}
            Err(e) => return Err(file_error(&path, e)),
        }
        if fill(&mut file, &mut buf).map_err(|e| read_error(&path, e))? == 0 {
            let e = FileError::Truncated {
                offset: 0,
                what: "the file header",
                need: 24,
                have: buf.len(),
            };
            return Err(file_error(&path, e));
        }
    };
    Ok(Source::File { file, parser, buf })
}

fn file_error(path: &std::path::Path, e: FileError) -> BuildError {
    BuildError::Other(format!("CAPTURE: {}: {e}", path.display()))
}

fn read_error(path: &std::path::Path, e: io::Error) -> BuildError {
    BuildError::io(format!("CAPTURE: reading {}", path.display()), e)
}

/// Appends up to [`CHUNK`] bytes of the file to `buf`; 0 at the end.
fn fill(file: &mut File, buf: &mut BytesMut) -> io::Result<usize> {
    buf.reserve(CHUNK);
    let spare = buf.spare_capacity_mut();
    // SAFETY: read(2) writes at most `len` bytes into the spare capacity and
    // only the bytes it reports are marked initialised below.
    let dst =
        unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), spare.len()) };
    loop {
        match file.read(dst) {
            Ok(n) => {
                // SAFETY: `n` bytes were just written by read.
                unsafe { buf.set_len(buf.len() + n) };
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl Out {
    /// Emits every complete record in `chunk`; returns the bytes used and
    /// how many more the incomplete last record needs.
    fn process(
        &mut self,
        parser: &mut Parser,
        chunk: &Bytes,
        em: &mut dyn Emitter,
    ) -> Result<(usize, usize), FileError> {
        let mut at = 0;
        let (mut packets, mut bytes) = (0u64, 0u64);
        let need = loop {
            let n = parser.next(&chunk[at..]);
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    self.stats.received.add(packets);
                    self.stats.bytes.add(bytes);
                    return Err(e);
                }
            };
            match n {
                Next::NeedMore { need } => break need,
                Next::Skip { consumed } => at += consumed,
                Next::Packet { pkt, consumed } => {
                    let data = at + pkt.data_off;
                    at += consumed;
                    packets += 1;
                    bytes += u64::from(pkt.caplen);
                    self.emit(
                        em,
                        chunk,
                        data,
                        pkt.caplen as usize,
                        pkt.linktype,
                        pkt.sec,
                        pkt.nsec,
                    );
                }
            }
        };
        self.stats.received.add(packets);
        self.stats.bytes.add(bytes);
        Ok((at, need))
    }

    /// Fills and emits the record of the frame at `chunk[data..data + len]`.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        em: &mut dyn Emitter,
        chunk: &Bytes,
        data: usize,
        len: usize,
        linktype: u16,
        sec: u64,
        nsec: u32,
    ) {
        let frame = &chunk[data..data + len];
        let Some(f) = decode(linktype, frame) else {
            self.unknown(linktype);
            return;
        };
        let rec = em.record();
        share_chunk(rec, chunk);
        let s = &self.slots;
        if let Some((o, l)) = f.mac {
            rec.put_opt(s[K_MAC], || Value::Raw(Span::new(data + o, l)));
            rec.put_opt(s[K_MAC_LEN], || Value::U16(l as u16));
            rec.put_opt(s[K_TYPE], || Value::U16(f.arphrd));
        }
        let l3len = frame.len().saturating_sub(f.l3);
        rec.put_opt(s[K_PKT], || {
            Value::Raw(Span::new(data + f.l3.min(frame.len()), l3len))
        });
        rec.put_opt(s[K_PKTLEN], || Value::U32(l3len as u32));
        rec.put_opt(s[K_PKTCOUNT], || Value::U32(1));
        rec.put_opt(s[K_SEC], || Value::U32(sec as u32));
        rec.put_opt(s[K_USEC], || Value::U32(nsec / 1000));
        if let Some(i) = f.ifindex.filter(|&i| i > 0) {
            rec.put_opt(s[K_IFINDEX_IN], || Value::U32(i));
        }
        rec.put_opt(s[K_FAMILY], || Value::U8(f.family));
        rec.put_opt(s[K_PROTOCOL], || Value::U16(f.ethertype));
        if let Some(v) = f.vlan {
            rec.put_opt(s[K_VLAN], || Value::U16(v));
        }
        em.emit();
    }

    fn unknown(&mut self, linktype: u16) {
        self.stats.unknown_link.inc();
        if !self.unknown_warned {
            self.unknown_warned = true;
            log::warn!(
                "{} (CAPTURE): {}: link type {linktype} (or a frame shorter than its link header) is not decoded; such packets are counted as unknown_link and skipped",
                self.name,
                self.path.display()
            );
        }
    }
}

impl Input for CaptureInput {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        bind_slots(&mut self.out.slots, b);
        Ok(())
    }

    fn fd(&self) -> Option<RawFd> {
        match &self.src {
            // A regular file always polls readable: the loop reads it flat out.
            Source::File { file, .. } => Some(file.as_raw_fd()),
            Source::Live(l) => Some(l.fd()),
        }
    }

    fn interval(&self) -> Option<std::time::Duration> {
        matches!(self.src, Source::Live(_)).then_some(live::STATS_EVERY)
    }

    fn tick(&mut self, _now: std::time::Instant, _em: &mut dyn Emitter) {
        if let Source::Live(l) = &self.src {
            let st = &self.out.stats;
            l.publish_stats(&self.out.name, &st.kernel_drops, &st.if_drops);
        }
    }

    fn stop(&mut self, em: &mut dyn Emitter) {
        // What the ring already holds is read; the kernel's drop counts go
        // into the exit summary.
        if matches!(self.src, Source::Live(_)) {
            let _ = self.read(em);
            self.tick(std::time::Instant::now(), em);
        }
    }

    fn read(&mut self, em: &mut dyn Emitter) -> io::Result<ReadStatus> {
        match &mut self.src {
            Source::File { file, parser, buf } => self.out.read_file(file, parser, buf, em),
            Source::Live(l) => self.out.read_live(l, em),
        }
    }
}

impl Out {
    fn read_file(
        &mut self,
        file: &mut File,
        parser: &mut Parser,
        buf: &mut BytesMut,
        em: &mut dyn Emitter,
    ) -> io::Result<ReadStatus> {
        let got = fill(file, buf)?;
        let chunk = buf.split().freeze();
        let result = self.process(parser, &chunk, em);
        em.record().release_buf();
        let end = |this: &mut Self| {
            log::info!(
                "{} (CAPTURE): end of {} after {} packets",
                this.name,
                this.path.display(),
                this.stats.received.get()
            );
            Ok(ReadStatus::Finished)
        };
        match result {
            Ok((used, need)) => {
                let left = chunk.len() - used;
                if got == 0 {
                    if let Err(e) = parser.finish(left, need) {
                        log::error!(
                            "{} (CAPTURE): {}: {e}; the packets before it were read",
                            self.name,
                            self.path.display()
                        );
                    }
                    return end(self);
                }
                // The partial record goes to the front of the next chunk,
                // in a buffer large enough for `fill` too: growing it there
                // made realloc copy the whole megabyte, chunk after chunk.
                buf.reserve(left + CHUNK.max(need));
                buf.extend_from_slice(&chunk[used..]);
                Ok(ReadStatus::More)
            }
            Err(e) => {
                log::error!(
                    "{} (CAPTURE): {}: {e}; the packets before it were read",
                    self.name,
                    self.path.display()
                );
                end(self)
            }
        }
    }
}

mod live;
