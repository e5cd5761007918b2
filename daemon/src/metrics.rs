//! The metrics endpoint: every registered counter set in the Prometheus text
//! format, served over plain HTTP on the `[global] metrics_address`.
//!
//! A scrape reads the same relaxed atomics SIGUSR1 and the exit summary
//! read; the per-record path never sees it (the only lock taken is the
//! registry's list of sets, which the hot path does not touch).

use rulogd_plugin::{Kind, SharedRegistry, StatSet};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// A bound listener, made before the privilege drop so a bad address stops
/// the start.
pub struct Endpoint {
    listener: TcpListener,
}

impl Endpoint {
    /// Binds `addr`.
    pub fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Endpoint {
            listener: TcpListener::bind(addr)?,
        })
    }

    /// The address it listens on (the real port when 0 was asked).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves scrapes on a thread of its own until the process exits.
    pub fn serve(self, shared: Arc<SharedRegistry>) -> std::io::Result<()> {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for conn in self.listener.incoming() {
                    match conn {
                        Ok(s) => {
                            if let Err(e) = answer(s, &shared, started) {
                                log::debug!("metrics: a scrape failed: {e}");
                            }
                        }
                        Err(e) => {
                            log::warn!("metrics: accept failed: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
            .map(|_| ())
    }
}

/// Reads one request and writes one response; the connection then closes.
fn answer(mut s: TcpStream, shared: &SharedRegistry, started: f64) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line = req
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]));
    let path = target.split(|&b| b == b'?').next().unwrap_or(&[]);
    let (status, ctype, body) = match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(&shared.stats(), started),
        ),
        (b"GET" | b"HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "rulogd serves /metrics only\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET /metrics\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    if method != b"HEAD" {
        s.write_all(body.as_bytes())?;
    }
    s.flush()
}

/// One metric family: its help, its type and its sample lines.
struct Family {
    help: String,
    kind: Kind,
    samples: Vec<String>,
}

/// The name, help and extra label of the metric a counter label maps to.
/// `node` is a stack's per-branch set (`<input>/<instance>`).
fn family_of(
    label: &str,
    kind: Kind,
    node: bool,
) -> (String, String, Option<(&'static str, &'static str)>) {
    let prefix = if node { "rulogd_stack_" } else { "rulogd_" };
    let dropped = |reason| {
        (
            format!("{prefix}dropped_records_total"),
            "Records dropped, by reason".to_string(),
            Some(("reason", reason)),
        )
    };
    let named = |name: &str, help: &str| (format!("{prefix}{name}"), help.to_string(), None);
    match label {
        "dropped_full" => dropped("queue_full"),
        "dropped_shutdown" => dropped("shutdown"),
        "dropped_by_filter" => dropped("filter"),
        "rcvbuf" => named(
            "receive_buffer_bytes",
            "The netlink socket's receive buffer",
        ),
        "table_bytes" => named("flow_table_bytes", "Memory held by the flow table"),
        "flows" => named("flows", "Flows tracked"),
        "spool_bytes" => named("spool_bytes", "Bytes held in the durable spool"),
        "spooled" => named(
            "spooled_records_total",
            "Records written to the durable spool",
        ),
        "queue_depth" => named("queue_depth_batches", "Batches waiting in the memory queue"),
        "pending" => named(
            "pending_records",
            "Records the writer holds while its peer is away",
        ),
        "enobufs" => named(
            "enobufs_total",
            "Times the kernel reported a receive buffer overrun (ENOBUFS)",
        ),
        "seq_gaps" => named("seq_gaps_total", "NFLOG sequence numbers missing"),
        "write_errors" => named("write_errors_total", "Failed writes, connects and reopens"),
        "reconnects" => named(
            "reconnects_total",
            "Reconnects or reopens after a failure or SIGHUP",
        ),
        "bytes" => named("bytes_total", "Bytes read or written by the instance"),
        _ => match kind {
            Kind::Counter => (
                format!("{prefix}{label}_total"),
                format!("The instance's `{label}` counter (SIGUSR1, exit summary)"),
                None,
            ),
            Kind::Gauge => (
                format!("{prefix}{label}"),
                format!("The instance's `{label}` gauge (SIGUSR1, exit summary)"),
                None,
            ),
        },
    }
}

/// Escapes a label value as the text format asks.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every set as one text-format document, families sorted by name.
pub fn render(sets: &[Arc<StatSet>], started: f64) -> String {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    for set in sets {
        let id = set.identity();
        let mut labels = String::new();
        if let Some(s) = id.stack {
            let _ = write!(labels, "stack=\"{}\",", escape(s));
        }
        let _ = write!(labels, "instance=\"{}\"", escape(id.instance));
        if let Some(p) = id.plugin {
            let _ = write!(labels, ",plugin=\"{}\"", escape(p));
        }
        for (label, kind, value) in set.snapshot_kinds() {
            let (name, help, extra) = family_of(label, kind, id.stack.is_some());
            let f = fams.entry(name.clone()).or_insert_with(|| Family {
                help,
                kind,
                samples: Vec::new(),
            });
            let extra = extra
                .map(|(k, v)| format!(",{k}=\"{v}\""))
                .unwrap_or_default();
            f.samples.push(format!("{name}{{{labels}{extra}}} {value}"));
        }
    }
    fams.insert(
        "rulogd_build_info".into(),
        Family {
            help: "The running rulogd's version".into(),
            kind: Kind::Gauge,
            samples: vec![format!(
                "rulogd_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )],
        },
    );
    fams.insert(
        "rulogd_start_time_seconds".into(),
        Family {
            help: "When the daemon started, in seconds since the epoch".into(),
            kind: Kind::Gauge,
            samples: vec![format!("rulogd_start_time_seconds {started:.3}")],
        },
    );
    let mut out = String::new();
    for (name, f) in fams {
        let t = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {name} {}", f.help);
        let _ = writeln!(out, "# TYPE {name} {t}");
        for s in f.samples {
            out.push_str(&s);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_become_families_with_instance_plugin_and_reason_labels() {
        let a = StatSet::new("log1 (NFLOG)");
        a.counter("received").add(7);
        a.gauge("rcvbuf").set(4096);
        let b = StatSet::new("json1 (JSON)");
        b.counter("dropped_full").add(2);
        b.counter("dropped_shutdown").add(1);
        let n = StatSet::new("log1/json1 (JSON)");
        n.counter("dropped_by_filter").add(3);
        let text = render(&[a, b, n], 1.5);
        assert!(text.contains("# TYPE rulogd_received_total counter\nrulogd_received_total{instance=\"log1\",plugin=\"NFLOG\"} 7\n"), "{text}");
        assert!(text.contains("# TYPE rulogd_receive_buffer_bytes gauge\nrulogd_receive_buffer_bytes{instance=\"log1\",plugin=\"NFLOG\"} 4096\n"), "{text}");
        assert!(text.contains("rulogd_dropped_records_total{instance=\"json1\",plugin=\"JSON\",reason=\"queue_full\"} 2\nrulogd_dropped_records_total{instance=\"json1\",plugin=\"JSON\",reason=\"shutdown\"} 1\n"), "{text}");
        assert!(text.contains("rulogd_stack_dropped_records_total{stack=\"log1\",instance=\"json1\",plugin=\"JSON\",reason=\"filter\"} 3\n"), "{text}");
        // One HELP and one TYPE per family.
        assert_eq!(
            text.matches("# TYPE rulogd_dropped_records_total ").count(),
            1
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_endpoint_answers_metrics_and_404() {
        let shared = Arc::new(SharedRegistry::default());
        let s = StatSet::new("u1 (UNIXSOCK)");
        s.counter("received").add(3);
        shared.add_stats(s);
        let ep = Endpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = ep.local_addr().unwrap();
        ep.serve(shared).unwrap();
        let get = |path: &str| {
            let mut c = TcpStream::connect(addr).unwrap();
            write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut r = String::new();
            c.read_to_string(&mut r).unwrap();
            r
        };
        let r = get("/metrics");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains("rulogd_received_total{instance=\"u1\",plugin=\"UNIXSOCK\"} 3\n"),
            "{r}"
        );
        assert!(get("/").starts_with("HTTP/1.1 404"));
    }
}
