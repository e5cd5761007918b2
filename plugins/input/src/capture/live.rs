//! CAPTURE's live source: an interface through rulogd-capture's libpcap
//! handle, non-blocking, polled on its selectable fd.

use super::{Out, CHUNK};
use bytes::BytesMut;
use rulogd_capture::{Live, LiveConfig};
use rulogd_plugin::{BuildCtx, BuildError, Counter, Emitter, ReadStatus};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Packets taken from the ring per `read()`, so timers and signals on the
/// input's thread still run under a flood.
const BUDGET: usize = 4096;

/// How often the kernel's drop counters are read.
pub(super) const STATS_EVERY: Duration = Duration::from_secs(1);

/// An open interface and the buffer its packets are copied into.
pub(super) struct LiveSource {
    live: Live,
    /// The ring's slots are reused as soon as the next packet is asked
    /// for, so each packet is copied here; records share its memory.
    buf: BytesMut,
}

/// Opens the interface now, before any privilege drop (AF_PACKET needs
/// CAP_NET_RAW).
pub(super) fn open(ctx: &BuildCtx) -> Result<LiveSource, BuildError> {
    let o = ctx.options;
    let cfg = LiveConfig {
        interface: o.str("interface").to_string(),
        promisc: o.int("promisc") != 0,
        snaplen: o.int("snaplen") as u32,
        buffer_size: o.int("buffer_size") as u32,
        timeout_ms: o.int("read_timeout") as u32,
        filter: o.str("filter").to_string(),
    };
    let live = Live::open(&cfg).map_err(|e| {
        let m = e.to_string();
        let hint = if m.contains("ermission") || m.contains("not permitted") {
            " (live capture needs CAP_NET_RAW: run as root or grant the capability)"
        } else {
            ""
        };
        BuildError::Other(format!("CAPTURE: {m}{hint}"))
    })?;
    log::info!(
        "{} (CAPTURE): capturing on {} (link type {}){}",
        ctx.instance,
        cfg.interface,
        live.linktype(),
        if cfg.filter.is_empty() {
            String::new()
        } else {
            format!(", filter `{}`", cfg.filter)
        }
    );
    Ok(LiveSource {
        live,
        buf: BytesMut::with_capacity(CHUNK),
    })
}

impl LiveSource {
    /// The fd to poll.
    pub(super) fn fd(&self) -> RawFd {
        self.live.fd()
    }

    /// Copies the kernel's drop counters into the instance's counters and
    /// says so in the log when they grew.
    pub(super) fn publish_stats(&self, name: &str, kernel: &Counter, ifdrop: &Counter) {
        if let Some((_, drop, ifd)) = self.live.stats() {
            let (drop, ifd) = (u64::from(drop), u64::from(ifd));
            if drop > kernel.get() {
                log::warn!(
                    "{name} (CAPTURE): the kernel dropped {} packets so far (capture ring full); raise buffer_size",
                    drop
                );
            }
            kernel.set(drop.max(kernel.get()));
            ifdrop.set(ifd.max(ifdrop.get()));
        }
    }
}

impl Out {
    pub(super) fn read_live(
        &mut self,
        l: &mut LiveSource,
        em: &mut dyn Emitter,
    ) -> io::Result<ReadStatus> {
        let linktype = l.live.linktype();
        let (mut packets, mut bytes) = (0u64, 0u64);
        // Budget spent with the ring still giving: there may be more.
        let mut status = ReadStatus::More;
        for _ in 0..BUDGET {
            let p = match l.live.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => {
                    status = ReadStatus::Idle;
                    break;
                }
                Err(e) => {
                    self.stats.received.add(packets);
                    self.stats.bytes.add(bytes);
                    return Err(io::Error::other(e.to_string()));
                }
            };
            packets += 1;
            bytes += p.data.len() as u64;
            if l.buf.capacity() - l.buf.len() < p.data.len() {
                l.buf = BytesMut::with_capacity(CHUNK.max(p.data.len()));
            }
            l.buf.extend_from_slice(p.data);
            let (sec, nsec, len) = (p.sec, p.nsec, p.data.len());
            let chunk = l.buf.split().freeze();
            self.emit(em, &chunk, 0, len, linktype, sec, nsec);
        }
        em.record().release_buf();
        self.stats.received.add(packets);
        self.stats.bytes.add(bytes);
        Ok(status)
    }
}
