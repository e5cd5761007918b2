//! The writer-thread side of IPFIX: numbers each message as it leaves and
//! puts the templates in front where the collector needs them.
//!
//! Each delivery record is one complete message. Sequence numbers and
//! export times are set here, not when a message is built, because only
//! the writer sees messages in the order they are sent (several stacks may
//! feed one instance, and the spool replays after an outage): the sequence
//! number of a message is the count of data records sent before it in this
//! observation domain (RFC 7011 section 3.1), continued across reconnects,
//! so a collector counting loss sees none when none happened.

use super::encode::{data_records, put_header, restamp, template_set, HEADER_LEN};
use rulogd_delivery::{Batch, DeliveryStats, SendError, Transport};
use std::io;
use std::time::{Duration, Instant};

/// When templates go out (ulogd's `send_template`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateMode {
    /// At the start of each connection (TCP) or of the export, and every
    /// refresh interval over UDP.
    Once,
    /// Never: the collector must know them already.
    Never,
    /// Before every data message.
    Always,
}

impl TemplateMode {
    /// ulogd's reading: `once`, `never`, anything else is "always".
    pub fn parse(s: &str) -> Self {
        match s {
            "once" => TemplateMode::Once,
            "never" => TemplateMode::Never,
            _ => TemplateMode::Always,
        }
    }
}

/// Wraps the UDP or TCP transport of one IPFIX instance.
pub struct IpfixTransport {
    inner: Box<dyn Transport>,
    mode: TemplateMode,
    /// UDP: templates again after this long; `None` over TCP or when 0.
    refresh: Option<Duration>,
    domain: u32,
    /// The template set of the instance's mode.
    templates: Vec<u8>,
    /// Data records sent so far (the next message's sequence number).
    seq: u32,
    /// No template sent on the current connection yet.
    fresh: bool,
    last_template: Option<Instant>,
    scratch: Batch,
}

impl IpfixTransport {
    /// Wraps `inner` for observation domain `domain`, sending `tids`' templates.
    pub fn new(
        inner: Box<dyn Transport>,
        mode: TemplateMode,
        refresh: Option<Duration>,
        domain: u32,
        tids: &[u16],
    ) -> Self {
        IpfixTransport {
            inner,
            mode,
            refresh,
            domain,
            templates: template_set(tids),
            seq: 0,
            fresh: true,
            last_template: None,
            scratch: Batch::with_capacity(64 * 1024),
        }
    }

    fn templates_due(&self) -> bool {
        match self.mode {
            TemplateMode::Never => false,
            TemplateMode::Always => true,
            TemplateMode::Once => {
                self.fresh
                    || match (self.refresh, self.last_template) {
                        (Some(every), Some(t)) => t.elapsed() >= every,
                        _ => false,
                    }
            }
        }
    }

    fn push_templates(&mut self, now: u32, seq: u32) {
        let buf = self.scratch.buf();
        let at = buf.len();
        buf.resize(at + HEADER_LEN, 0);
        buf.extend_from_slice(&self.templates);
        put_header(&mut buf[at..], now, seq, self.domain);
        self.scratch.commit();
    }
}

fn export_time() -> u32 {
    rulogd_plugin::now_sec_usec().0
}

impl Transport for IpfixTransport {
    fn describe(&self) -> &str {
        self.inner.describe()
    }

    fn is_open(&self) -> bool {
        self.inner.is_open()
    }

    fn open(&mut self) -> io::Result<()> {
        self.inner.open()?;
        // Over TCP a new connection is a new session: templates first.
        self.fresh = true;
        Ok(())
    }

    fn send(&mut self, batch: &Batch, from: usize, stats: &DeliveryStats) -> Result<(), SendError> {
        let now = export_time();
        self.scratch.clear();
        // For each scratch record: the batch index of a data message, or
        // None for a template message.
        let mut origin: Vec<Option<usize>> = Vec::with_capacity(batch.records() - from + 1);
        let mut seq = self.seq;
        let mut sent_templates = false;
        for i in from..batch.records() {
            if self.templates_due() && (!sent_templates || self.mode == TemplateMode::Always) {
                self.push_templates(now, seq);
                origin.push(None);
                sent_templates = true;
            }
            let msg = batch.record(i);
            let buf = self.scratch.buf();
            let at = buf.len();
            buf.extend_from_slice(msg);
            if msg.len() >= HEADER_LEN {
                restamp(&mut buf[at..], now, seq);
            }
            self.scratch.commit();
            origin.push(Some(i));
            seq = seq.wrapping_add(data_records(msg));
        }
        let result = self.inner.send(&self.scratch, 0, stats);
        let sent = match &result {
            Ok(()) => origin.len(),
            Err(e) => e.next,
        };
        // Everything before `sent` went out: advance the numbering by it.
        for (k, o) in origin.iter().enumerate().take(sent) {
            match o {
                Some(_) => self.seq = self.seq.wrapping_add(data_records(self.scratch.record(k))),
                None => {
                    self.fresh = false;
                    self.last_template = Some(Instant::now());
                }
            }
        }
        result.map_err(|e| SendError {
            next: origin[e.next..]
                .iter()
                .find_map(|o| *o)
                .unwrap_or(batch.records()),
            error: e.error,
        })
    }

    fn close(&mut self) {
        self.inner.close();
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.inner.reopen()?;
        self.fresh = true;
        Ok(())
    }

    fn limit_send_time(&mut self, limit: Duration) {
        self.inner.limit_send_time(limit);
    }
}
