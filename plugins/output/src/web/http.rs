//! WEB's HTTP side: the page, its assets and its JSON endpoints, read-only.
//!
//! Requests are few (one browser polling every few seconds), so each
//! connection gets a short-lived thread, up to a small limit, and is closed
//! after one answer. Only GET and HEAD exist: nothing a request says can
//! change the daemon. Every answer carries a Content-Security-Policy that
//! allows the page's own script and nothing else, and the page writes
//! every value with textContent, so traffic-borne text is never markup.

use super::agg::{addr, Agg};
use rulogd_plugin::StatsView;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// Connections answered at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;

/// What the server threads share.
pub struct Site {
    /// The instance id, for messages.
    pub name: String,
    /// The series and tallies.
    pub agg: Arc<Mutex<Agg>>,
    /// The daemon's counters (the same SIGUSR1 prints).
    pub stats: StatsView,
    /// A token every request must carry, if set.
    pub token: Option<String>,
    /// Top-list length.
    pub top: usize,
}

/// Serves `listener` on a thread of its own until the process exits.
pub fn serve(listener: TcpListener, site: Arc<Site>) -> std::io::Result<()> {
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name(format!("web {}", site.name))
        .spawn(move || {
            for conn in listener.incoming() {
                let s = match conn {
                    Ok(s) => s,
                    Err(e) => {
                        log::warn!("{} (WEB): accept failed: {e}", site.name);
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                while busy.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                    std::thread::sleep(Duration::from_millis(5));
                }
                busy.fetch_add(1, Ordering::AcqRel);
                let (site, done) = (site.clone(), busy.clone());
                let spawned =
                    std::thread::Builder::new()
                        .name("web conn".into())
                        .spawn(move || {
                            if let Err(e) = answer(s, &site) {
                                log::debug!("{} (WEB): a request failed: {e}", site.name);
                            }
                            done.fetch_sub(1, Ordering::AcqRel);
                        });
                if spawned.is_err() {
                    busy.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })
        .map(|_| ())
}

/// A parsed request line and the headers WEB reads.
struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    bearer: Option<String>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?;
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let mut bearer = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("authorization") {
                bearer = v
                    .trim()
                    .strip_prefix("Bearer ")
                    .map(|t| t.trim().to_string());
            }
        }
    }
    Some(Request {
        method,
        path: path.to_string(),
        query,
        bearer,
    })
}

impl Request {
    fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Compares without an early exit, so the time taken says nothing of how
/// much of a guessed token was right.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn answer(mut s: TcpStream, site: &Site) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 16 * 1024 {
            return respond(
                &mut s,
                431,
                "text/plain",
                b"request header too large",
                false,
            );
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let Some(req) = parse(&head) else {
        return respond(&mut s, 400, "text/plain", b"bad request", false);
    };
    let head_only = req.method == "HEAD";
    if req.method != "GET" && !head_only {
        return respond(&mut s, 405, "text/plain", b"only GET and HEAD", false);
    }
    if let Some(t) = &site.token {
        let given = req.bearer.as_deref().or(req.param("token"));
        if !given.is_some_and(|g| same(g, t)) {
            return respond(&mut s, 401, "text/plain", b"token required", head_only);
        }
    }
    let (status, ctype, body): (u16, &str, Vec<u8>) = match req.path.as_str() {
        "/" | "/index.html" => (200, "text/html; charset=utf-8", INDEX.into()),
        "/app.js" => (200, "text/javascript; charset=utf-8", APP_JS.into()),
        "/style.css" => (200, "text/css; charset=utf-8", STYLE.into()),
        p if p.starts_with("/api/") => {
            let (st, v) = api(site, &req);
            (st, "application/json", v.to_string().into_bytes())
        }
        _ => (404, "text/plain", b"not found".to_vec()),
    };
    respond(&mut s, status, ctype, &body, head_only)
}

fn window(req: &Request) -> u64 {
    req.param("window")
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or(900)
        .clamp(1, 366 * 86_400)
}

fn api(site: &Site, req: &Request) -> (u16, Value) {
    let secs = window(req);
    let agg = || site.agg.lock().unwrap_or_else(|e| e.into_inner());
    match req.path.as_str() {
        "/api/series" => (200, agg().series(secs)),
        "/api/top" => {
            let n = req
                .param("n")
                .and_then(|n| n.parse().ok())
                .unwrap_or(site.top)
                .clamp(1, 1000);
            (200, agg().top(secs, n))
        }
        "/api/host" => {
            let Some(ip) = req.param("ip").and_then(|i| i.parse::<IpAddr>().ok()) else {
                return (400, json!({"error": "ip= must be an IPv4 or IPv6 address"}));
            };
            match agg().host(&addr(ip), secs) {
                Some(v) => (200, v),
                None => (
                    404,
                    json!({"error": "host not tracked", "host": ip.to_string()}),
                ),
            }
        }
        "/api/stats" => (200, stats(&site.stats)),
        _ => (404, json!({"error": "no such endpoint"})),
    }
}

/// Every counter set, as SIGUSR1 prints them.
fn stats(view: &StatsView) -> Value {
    let sets: Vec<Value> = view
        .sets()
        .iter()
        .map(|s| {
            let counters: serde_json::Map<String, Value> = s
                .snapshot()
                .into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            json!({"name": s.name, "counters": counters})
        })
        .collect();
    json!({ "sets": sets })
}

fn respond(
    s: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: default-src 'self'; img-src 'self' data:; frame-ancestors 'none'\r\n\
         Referrer-Policy: no-referrer\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    s.write_all(out.as_bytes())?;
    if !head_only {
        s.write_all(body)?;
    }
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(addr: std::net::SocketAddr, req: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn a_token_is_required_when_set_and_nothing_but_get_is_answered() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let site = Arc::new(Site {
            name: "web1".into(),
            agg: Arc::new(Mutex::new(Agg::new(10, 10, 10, 10))),
            stats: StatsView::default(),
            token: Some("s3cret".into()),
            top: 10,
        });
        serve(l, site).unwrap();
        assert!(ask(addr, "GET /api/series HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 401"));
        assert!(ask(addr, "GET /?token=wrong HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 401"));
        let ok = ask(addr, "GET /api/series?token=s3cret HTTP/1.1\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("\"bin_seconds\":10"), "{ok}");
        let ok = ask(
            addr,
            "GET /app.js HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n",
        );
        assert!(
            ok.starts_with("HTTP/1.1 200") && ok.contains("textContent"),
            "{ok}"
        );
        let no = ask(
            addr,
            "DELETE /api/series HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n",
        );
        assert!(
            no.starts_with("HTTP/1.1 405") && no.contains("Allow: GET, HEAD"),
            "{no}"
        );
        let head = ask(
            addr,
            "HEAD / HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n",
        );
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
    }

    #[test]
    fn request_lines_queries_and_tokens() {
        let r = parse("GET /api/host?ip=10.0.0.1&window=60 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n").unwrap();
        assert_eq!(r.path, "/api/host");
        assert_eq!(r.param("ip"), Some("10.0.0.1"));
        assert_eq!(window(&r), 60);
        assert_eq!(r.bearer.as_deref(), Some("abc"));
        let r = parse("GET /api/host?ip=fe80%3A%3A1 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.param("ip"), Some("fe80::1"));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert!(same("token", "token") && !same("token", "tokex") && !same("t", "tt"));
    }
}
