//! GRAPHITE: NFACCT counters to carbon in the plaintext protocol, as
//! ulogd's `ulogd_output_GRAPHITE` sends them, two lines per record:
//!
//! `<prefix>.<sum.name>.pkts <sum.pkts> <ts>` and `….bytes <sum.bytes> <ts>`
//!
//! where `ts` is `oob.time.sec` when set and non-zero, else now. Beyond
//! ulogd: the connection is made by the shared delivery's writer thread, so
//! rulogd starts while carbon is down, reconnects with backoff, and holds
//! datapoints (bounded by `max_pending`, counted beyond) until carbon is
//! back; both lines of a record travel as one unit, never torn; and what was
//! sent in the last `resend_window` seconds is sent again after a reconnect
//! ([`window`]), so lines carbon's kernel took but carbon never read are not
//! lost.

mod window;

use crate::rendered::{Render, Rendered};
use crate::text::{cstr, now};
use rulogd_delivery::{
    spool_config, Delivery, DeliveryConfig, StreamTransport, Transport, WhenFull,
    DEFAULT_BATCH_BYTES, SPOOL_RETRY_MAX,
};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, KeyDef, KeyType, OptionDef, Output, Record, Slot,
};

use std::time::Duration;
use window::{ResendTransport, WindowConfig, WindowStats};

static OPTIONS: [OptionDef; 11] = [
    OptionDef::str("host", "", "carbon host (name or address)").check(rulogd_plugin::options::check_not_empty).mandatory(),
    OptionDef::str("port", "", "carbon plaintext port, number or service name (usually 2003)").check(rulogd_plugin::options::check_port).mandatory(),
    OptionDef::str("prefix", "", "metric name prefix, e.g. netfilter.nfacct"),
    OptionDef::int("queue_size", "64", "rulogd only: batches queued for the writer thread").range(1, 1 << 20),
    OptionDef::int(
        "max_pending",
        "67108864",
        "rulogd only: bytes of datapoints held while carbon is away; beyond it new ones are dropped and counted",
    ).range(0, i64::MAX),
    OptionDef::str("when_full", "drop", "rulogd only: full queue: drop (counted) or block").one_of(&["block", "drop"]),
    rulogd_delivery::SPOOL_DIR,
    rulogd_delivery::SPOOL_SIZE,
    OptionDef::int(
        "resend_window",
        "60",
        "rulogd only: seconds of sent datapoints re-sent after a reconnect; 0 turns it off",
    )
    .range(0, 86_400),
    OptionDef::int(
        "resend_max",
        "8388608",
        "rulogd only: bytes the resend window holds at most; beyond, the oldest are pushed out and counted",
    )
    .range(0, i64::MAX),
    OptionDef::int(
        "resend_acked",
        "10",
        "rulogd only: seconds a datapoint stays in the resend window once carbon's kernel ACKed it; -1 ignores ACKs",
    )
    .range(-1, 86_400),
];

static INPUT: [KeyDef; 4] = [
    KeyDef::new("sum.name", KeyType::String),
    KeyDef::new("sum.pkts", KeyType::U64),
    KeyDef::new("sum.bytes", KeyType::U64),
    KeyDef::new("oob.time.sec", KeyType::U32),
];

rulogd_plugin::plugin! {
    Output "GRAPHITE" (build): "Sends NFACCT counters to carbon (Graphite plaintext protocol over TCP)";
    options &OPTIONS;
    input &INPUT;
}

/// One GRAPHITE instance in one stack.
pub struct Graphite {
    prefix: Box<[u8]>,
    name: Option<Slot>,
    pkts: Option<Slot>,
    bytes: Option<Slot>,
    sec: Option<Slot>,
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    let o = ctx.options;
    let (host, port) = (o.str("host").to_string(), o.str("port").to_string());
    if host.is_empty() {
        return Err(BuildError::option("host", "missing carbon host"));
    }
    if port.is_empty() {
        return Err(BuildError::option("port", "missing carbon port"));
    }
    let q = o.int("queue_size");
    if !(1..=1 << 20).contains(&q) {
        return Err(BuildError::option(
            "queue_size",
            format!("{q} is out of range 1..=1048576"),
        ));
    }
    let max_pending = o.int("max_pending");
    if max_pending < 0 {
        return Err(BuildError::option("max_pending", "must not be negative"));
    }
    let when_full = WhenFull::option(o)?;
    let mut cfg = DeliveryConfig::new(ctx.instance, "GRAPHITE", when_full);
    cfg.queue_size = q as usize;
    cfg.max_pending = usize::try_from(max_pending).unwrap_or(usize::MAX);
    cfg.batch_bytes = DEFAULT_BATCH_BYTES;
    cfg.spool = spool_config(ctx, SPOOL_RETRY_MAX)?;
    let window = window_config(ctx)?;
    let delivery = Delivery::shared(ctx, "GRAPHITE", &cfg, || {
        // Connected by the writer thread, with backoff: carbon may be down.
        let tcp = StreamTransport::tcp(&host, &port);
        let Some(w) = window else {
            return Ok(Box::new(tcp) as Box<dyn Transport>);
        };
        let stats = WindowStats::new(ctx.instance);
        ctx.shared.add_stats(stats.set.clone());
        Ok(Box::new(ResendTransport::new(tcp, w, stats, ctx.instance)))
    })?;
    Ok(Rendered::boxed(
        delivery.producer(false),
        Graphite {
            prefix: o.str("prefix").as_bytes().into(),
            name: None,
            pkts: None,
            bytes: None,
            sec: None,
        },
    ))
}

/// The resend window's bounds; `None` when `resend_window` or `resend_max`
/// is 0.
fn window_config(ctx: &BuildCtx) -> Result<Option<WindowConfig>, BuildError> {
    let o = ctx.options;
    let (secs, max, acked) = (
        o.int("resend_window"),
        o.int("resend_max"),
        o.int("resend_acked"),
    );
    if !(0..=86_400).contains(&secs) {
        return Err(BuildError::option(
            "resend_window",
            format!("{secs} is out of range 0..=86400 (seconds)"),
        ));
    }
    let max = usize::try_from(max)
        .map_err(|_| BuildError::option("resend_max", format!("{max} must not be negative")))?;
    if !(-1..=86_400).contains(&acked) {
        return Err(BuildError::option(
            "resend_acked",
            format!("{acked} is out of range -1..=86400 (seconds)"),
        ));
    }
    if secs == 0 || max == 0 {
        return Ok(None);
    }
    Ok(Some(WindowConfig {
        keep: Duration::from_secs(secs as u64),
        max_bytes: max,
        acked_keep: u64::try_from(acked).ok().map(Duration::from_secs),
    }))
}

/// Appends `<prefix>.<name>.<what> <value> <ts>\n`.
fn line(out: &mut Vec<u8>, prefix: &[u8], name: &[u8], what: &[u8], v: u64, ts: u64) {
    out.extend_from_slice(prefix);
    out.push(b'.');
    out.extend_from_slice(name);
    out.push(b'.');
    out.extend_from_slice(what);
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
    out.push(b'\n');
}

impl Render for Graphite {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.name = b.input("sum.name");
        self.pkts = b.input("sum.pkts");
        self.bytes = b.input("sum.bytes");
        self.sec = b.input("oob.time.sec");
        Ok(())
    }

    fn render(&mut self, rec: &Record, out: &mut Vec<u8>) -> bool {
        // ulogd reads the time without a validity check: 0 means "now".
        let ts = match rec.get_u64(self.sec).unwrap_or(0) as u32 {
            0 => now().0 as u64,
            t => u64::from(t),
        };
        let name = rec.get_bytes(self.name).map_or(&b"(null)"[..], cstr);
        let pkts = rec.get_u64(self.pkts).unwrap_or(0);
        let bytes = rec.get_u64(self.bytes).unwrap_or(0);
        line(out, &self.prefix, name, b"pkts", pkts, ts);
        line(out, &self.prefix, name, b"bytes", bytes, ts);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{text, try_build, Harness};
    use rulogd_plugin::{SharedRegistry, Value};
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::Duration;

    const KEYS: [(&str, KeyType); 4] = [
        ("sum.name", KeyType::String),
        ("sum.pkts", KeyType::U64),
        ("sum.bytes", KeyType::U64),
        ("oob.time.sec", KeyType::U32),
    ];

    #[test]
    fn two_lines_per_record_as_ulogd_sends_them() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        let mut h = Harness::new(
            REGISTRATION,
            &[
                ("host", "127.0.0.1"),
                ("port", &port),
                ("prefix", "netfilter.nfacct"),
            ],
            &KEYS,
        );
        h.set("sum.name", text("ulogtest_a"))
            .set("sum.pkts", Value::U64(3))
            .set("sum.bytes", Value::U64(234))
            .set("oob.time.sec", Value::U32(1795444875));
        h.write();
        // No time: now.
        h.set("sum.name", text("b"))
            .set("sum.pkts", Value::U64(0))
            .set("sum.bytes", Value::U64(u64::MAX));
        h.write();
        h.stop();
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines[0], "netfilter.nfacct.ulogtest_a.pkts 3 1795444875");
        assert_eq!(lines[1], "netfilter.nfacct.ulogtest_a.bytes 234 1795444875");
        assert!(
            lines[2].starts_with("netfilter.nfacct.b.pkts 0 17"),
            "{}",
            lines[2]
        );
        let ts: u64 = lines[3].rsplit(' ').next().unwrap().parse().unwrap();
        assert!(ts > 1_600_000_000);
        assert!(lines[3].starts_with(&format!("netfilter.nfacct.b.bytes {} ", u64::MAX)));
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn host_and_port_are_required() {
        let shared = SharedRegistry::default();
        for opts in [&[("port", "2003")][..], &[("host", "localhost")][..]] {
            assert!(try_build(REGISTRATION, opts, &shared).is_err());
        }
        let bad = [("host", "h"), ("port", "1"), ("when_full", "spool")];
        assert!(try_build(REGISTRATION, &bad, &shared).is_err());
    }

    #[test]
    fn resend_options_are_range_checked() {
        let shared = SharedRegistry::default();
        for (k, v) in [
            ("resend_window", "-1"),
            ("resend_window", "86401"),
            ("resend_max", "-1"),
            ("resend_acked", "-2"),
        ] {
            let opts = [("host", "127.0.0.1"), ("port", "1"), (k, v)];
            let e = try_build(REGISTRATION, &opts, &shared);
            assert!(e.is_err(), "{k}={v} should be refused");
        }
        for (k, v) in [
            ("resend_window", "0"),
            ("resend_acked", "-1"),
            ("resend_max", "0"),
        ] {
            let opts = [("host", "127.0.0.1"), ("port", "1"), (k, v)];
            let shared = SharedRegistry::default();
            assert!(try_build(REGISTRATION, &opts, &shared).is_ok(), "{k}={v}");
        }
    }
}
