//! JSON: one object per record and line, byte for byte as ulogd 2.0.8's
//! `ulogd_output_JSON` writes it (jansson `json_dumps(obj, 0)`), to a file,
//! a TCP or unix stream peer, or UDP datagrams.
//!
//! Differences from ulogd, all on the delivery side: writes happen on a
//! writer thread in batches; network peers may be down at start and are
//! reconnected with backoff without losing or tearing lines; INT64 keys are
//! written (ulogd 2.0.9 behaviour; 2.0.8 left them out); `timestamp_format`,
//! `queue_size`, `when_full` and `max_pending` are ours.

mod out;
mod render;
mod timestamp;

pub use render::{json_int, json_str, push_string, Plan, PlanOptions, RenderCtx, Src};
pub use timestamp::{Timestamper, TsFormat};

use rulogd_delivery::{
    spool_config, Delivery, DeliveryConfig, FileTransport, Producer, StreamTransport, Transport,
    UdpTransport, WhenFull, SPOOL_RETRY_MAX,
};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, OptValue, OptionDef, Options, Output, OutputError, Record, Slot,
};
use std::sync::Once;

/// Batch size at which rendered lines go to the writer thread (`sync=0`).
/// Larger than the delivery default: under load every hand-over to an idle
/// writer is a futex wake-up and a write(2), and at ~600 bytes a line 64 KiB
/// is only ~100 records; 256 KiB quarters both (the writer's CPU per record
/// fell from ~100 to ~35 ns in bench/pipeline). The queue then holds at most
/// `queue_size` x 256 KiB (16 MiB by default) while the file is slow.
pub const JSON_BATCH_BYTES: usize = 256 * 1024;

/// Longest unix socket path (`sun_path` holds 108 bytes with the NUL).
const UNIX_PATH_MAX: usize = 108;

/// In unix mode `file` is the socket path, which must fit a sockaddr_un.
fn unix_path_fits(v: &OptValue, o: &Options) -> Result<(), String> {
    let path = v.to_string();
    if !o.str("mode").eq_ignore_ascii_case("unix") {
        return Ok(());
    }
    if path.is_empty() {
        return Err("missing unix socket path".into());
    }
    if path.len() >= UNIX_PATH_MAX {
        return Err(format!(
            "unix socket path is longer than {}",
            UNIX_PATH_MAX - 1
        ));
    }
    Ok(())
}

/// tcp and udp modes need a peer.
fn peer_host_given(v: &OptValue, o: &Options) -> Result<(), String> {
    let mode = o.str("mode");
    let net = mode.eq_ignore_ascii_case("tcp") || mode.eq_ignore_ascii_case("udp");
    if net && v.to_string().is_empty() {
        return Err("missing peer host".into());
    }
    Ok(())
}

static OPTIONS: [OptionDef; 15] = [
    OptionDef::str(
        "file",
        "/var/log/ulogd.json",
        "Output file in file mode; socket path in unix mode",
    )
    .check(unix_path_fits),
    OptionDef::int(
        "sync",
        "0",
        "Hand every line to the writer at once instead of in 256 KiB batches",
    )
    .flag(),
    OptionDef::int("timestamp", "1", "Add a timestamp field").flag(),
    OptionDef::int(
        "eventv1",
        "0",
        "Logstash event v1: add \"@version\": 1 and call the timestamp @timestamp",
    )
    .flag(),
    OptionDef::str("device", "Netfilter", "Value of the \"dvc\" field"),
    OptionDef::int(
        "boolean_label",
        "0",
        "Write raw.label as \"action\": \"allowed\" (non-zero) or \"blocked\" (zero)",
    )
    .flag(),
    OptionDef::str("mode", "file", "Transport: file, tcp, udp or unix")
        .one_of(&["file", "tcp", "udp", "unix"]),
    OptionDef::str("host", "127.0.0.1", "Peer host in tcp and udp modes").check(peer_host_given),
    OptionDef::str(
        "port",
        "12345",
        "Peer port (number or service name) in tcp and udp modes",
    )
    .check(rulogd_plugin::options::check_port),
    OptionDef::str(
        "timestamp_format",
        "ulogd",
        "ulogd (local time as ulogd writes it), rfc3339 (UTC with Z) or epoch (a number)",
    )
    .one_of(&["ulogd", "rfc3339", "epoch"]),
    OptionDef::int("queue_size", "64", "Batches queued for the writer thread").range(1, 1 << 20),
    OptionDef::str(
        "when_full",
        "auto",
        "Full queue: block or drop (auto: block in file mode, drop in network modes)",
    )
    .one_of(&["auto", "block", "drop"]),
    OptionDef::int(
        "max_pending",
        "67108864",
        "Bytes held in memory while a peer is away; beyond it when_full applies",
    )
    .range(0, i64::MAX),
    // tcp and unix modes only: a file does not go away, and UDP cannot tell.
    rulogd_delivery::SPOOL_DIR,
    rulogd_delivery::SPOOL_SIZE,
];

rulogd_plugin::plugin! {
    Output "JSON" wildcard (build): "Writes each record as a JSON object on one line (file, tcp, udp, unix)";
    options &OPTIONS;
}

/// Where lines go (`mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Append to `file`.
    File,
    /// TCP client to `host`:`port`.
    Tcp,
    /// One UDP datagram per line to `host`:`port`.
    Udp,
    /// Unix stream client to the socket `file`.
    Unix,
}

/// The options of one JSON instance, validated.
#[derive(Clone, Debug)]
pub struct JsonConfig {
    /// `file`.
    pub file: String,
    /// `sync`.
    pub sync: bool,
    /// `timestamp`.
    pub timestamp: bool,
    /// `eventv1`.
    pub eventv1: bool,
    /// `device`.
    pub device: String,
    /// `boolean_label`.
    pub boolean_label: bool,
    /// `mode`.
    pub mode: Mode,
    /// `host`.
    pub host: String,
    /// `port`.
    pub port: String,
    /// `timestamp_format`.
    pub timestamp_format: TsFormat,
    /// `queue_size`.
    pub queue_size: usize,
    /// `when_full` resolved for the mode.
    pub when_full: WhenFull,
    /// `max_pending`.
    pub max_pending: usize,
}

impl JsonConfig {
    /// Validates an instance's options.
    pub fn from_options(o: &Options) -> Result<Self, BuildError> {
        let mode_s = o.str("mode");
        let mode = [
            ("file", Mode::File),
            ("tcp", Mode::Tcp),
            ("udp", Mode::Udp),
            ("unix", Mode::Unix),
        ]
        .into_iter()
        .find(|(n, _)| mode_s.eq_ignore_ascii_case(n))
        .map(|(_, m)| m)
        .ok_or_else(|| {
            BuildError::option(
                "mode",
                format!("unknown mode `{mode_s}`; valid modes: file, tcp, udp, unix"),
            )
        })?;
        let tf = o.str("timestamp_format");
        let timestamp_format = TsFormat::parse(tf).ok_or_else(|| {
            BuildError::option(
                "timestamp_format",
                format!("unknown format `{tf}`; valid formats: ulogd, rfc3339, epoch"),
            )
        })?;
        let wf = o.str("when_full");
        let when_full = if wf.is_empty() || wf.eq_ignore_ascii_case("auto") {
            if mode == Mode::File {
                WhenFull::Block
            } else {
                WhenFull::Drop
            }
        } else {
            WhenFull::parse(wf).ok_or_else(|| {
                BuildError::option(
                    "when_full",
                    format!("unknown policy `{wf}`; valid: block, drop, auto"),
                )
            })?
        };
        let queue_size = o.int("queue_size");
        if !(1..=1 << 20).contains(&queue_size) {
            return Err(BuildError::option(
                "queue_size",
                format!("{queue_size} is out of range 1..=1048576"),
            ));
        }
        let max_pending = o.int("max_pending");
        if max_pending < 0 {
            return Err(BuildError::option("max_pending", "must not be negative"));
        }
        let cfg = JsonConfig {
            file: o.str("file").to_string(),
            sync: o.int("sync") != 0,
            timestamp: o.int("timestamp") != 0,
            eventv1: o.int("eventv1") != 0,
            device: o.str("device").to_string(),
            boolean_label: o.int("boolean_label") != 0,
            mode,
            host: o.str("host").to_string(),
            port: o.str("port").to_string(),
            timestamp_format,
            queue_size: queue_size as usize,
            when_full,
            max_pending: usize::try_from(max_pending).unwrap_or(usize::MAX),
        };
        cfg.check_destination()?;
        Ok(cfg)
    }

    fn check_destination(&self) -> Result<(), BuildError> {
        match self.mode {
            Mode::Unix if self.file.is_empty() => {
                Err(BuildError::option("file", "missing unix socket path"))
            }
            Mode::Unix if self.file.len() >= UNIX_PATH_MAX => Err(BuildError::option(
                "file",
                format!("unix socket path is longer than {}", UNIX_PATH_MAX - 1),
            )),
            Mode::Tcp | Mode::Udp if self.host.is_empty() => {
                Err(BuildError::option("host", "missing peer host"))
            }
            Mode::Tcp | Mode::Udp if self.port.is_empty() => {
                Err(BuildError::option("port", "missing peer port"))
            }
            _ => Ok(()),
        }
    }

    /// The transport for the mode; a file is opened now so a build fails on it.
    pub fn transport(&self) -> Result<Box<dyn Transport>, BuildError> {
        Ok(match self.mode {
            Mode::File => Box::new(FileTransport::opened(&self.file).map_err(|e| {
                BuildError::io(format!("can't open JSON log file {}", self.file), e)
            })?),
            Mode::Tcp => Box::new(StreamTransport::tcp(&self.host, &self.port)),
            Mode::Unix => Box::new(StreamTransport::unix(&self.file)),
            Mode::Udp => Box::new(UdpTransport::new(&self.host, &self.port)),
        })
    }

    /// The delivery settings for instance `id`.
    pub fn delivery(&self, id: &str) -> DeliveryConfig {
        let mut d = DeliveryConfig::new(id, "JSON", self.when_full);
        d.queue_size = self.queue_size;
        d.max_pending = self.max_pending;
        d.batch_bytes = JSON_BATCH_BYTES;
        d
    }
}

/// One JSON instance in one stack.
pub struct Json {
    cfg: JsonConfig,
    producer: Producer,
    plan: Plan,
    ts: Timestamper,
    /// `"device"`, quoted and escaped.
    device: Box<[u8]>,
    sec: Option<Slot>,
    usec: Option<Slot>,
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    Ok(Box::new(Json::new(ctx)?))
}

impl Json {
    /// Builds an instance, sharing the writer of other instances with its id.
    pub fn new(ctx: &BuildCtx) -> Result<Self, BuildError> {
        let cfg = JsonConfig::from_options(ctx.options)?;
        static TZ: Once = Once::new();
        // localtime_r need not read TZ itself; do it once, as localtime would.
        // SAFETY: tzset only reinitialises libc's zone state.
        TZ.call_once(|| unsafe { tzset() });
        let mut dc = cfg.delivery(ctx.instance);
        if matches!(cfg.mode, Mode::Tcp | Mode::Unix) {
            dc.spool = spool_config(ctx, SPOOL_RETRY_MAX)?;
        }
        let delivery = Delivery::shared(ctx, "JSON", &dc, || {
            let t = cfg.transport()?;
            if cfg.mode == Mode::File {
                rulogd_delivery::prepare_reopen(ctx, "JSON", std::path::Path::new(&cfg.file));
            }
            Ok(t)
        })?;
        let mut device = Vec::new();
        // A C string stops at NUL, and the option is UTF-8 already.
        let dev = cfg.device.as_bytes();
        push_string(&mut device, json_str(dev).unwrap_or(b""));
        Ok(Json {
            producer: delivery.producer(cfg.sync),
            plan: Plan::default(),
            ts: Timestamper::new(cfg.timestamp_format),
            device: device.into_boxed_slice(),
            sec: None,
            usec: None,
            cfg,
        })
    }

    /// The validated options.
    pub fn config(&self) -> &JsonConfig {
        &self.cfg
    }
}

// The libc crate does not bind tzset on every target; it is POSIX.
extern "C" {
    fn tzset();
}

impl Output for Json {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.plan = Plan::new(
            b.upstream,
            PlanOptions {
                eventv1: self.cfg.eventv1,
                timestamp: self.cfg.timestamp,
                boolean_label: self.cfg.boolean_label,
            },
        );
        // Every copy of a name is bound to the same (nearest) producer, so
        // any match will do; ulogd keeps the last.
        let slot = |name: &str| {
            b.upstream
                .iter()
                .rev()
                .find(|k| k.def.name == name)
                .map(|k| k.slot)
        };
        self.sec = slot("oob.time.sec");
        self.usec = slot("oob.time.usec");
        Ok(())
    }

    fn write(&mut self, rec: &Record) -> Result<(), OutputError> {
        let timestamp = if self.cfg.timestamp {
            self.ts
                .render(rec.get_u64(self.sec), rec.get_u64(self.usec))
        } else {
            None
        };
        let ctx = RenderCtx {
            timestamp,
            ts_quoted: self.cfg.timestamp_format.quoted(),
            device: &self.device,
        };
        let out = self.producer.batch().buf();
        self.plan.render(rec, &ctx, out);
        out.push(b'\n');
        self.producer.commit()
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        self.producer.flush()
    }
}

#[cfg(test)]
mod render_ref;
#[cfg(test)]
mod tests;
