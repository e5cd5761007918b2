//! A headless Chromium driven through chromedriver (Debian's chromium and
//! chromium-driver) over the W3C WebDriver protocol: enough to open a
//! page, read elements' text, click and take a screenshot.

use crate::Netns;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The key W3C WebDriver uses for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // chromedriver keeps the connection open: read by Content-Length.
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let (head_end, len) = loop {
        let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed: {}",
                String::from_utf8_lossy(&out)
            ));
        }
        out.extend_from_slice(&buf[..n]);
        if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("no Content-Length: {head}"))?;
            break (i + 4, len);
        }
    };
    while out.len() < head_end + len {
        let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let payload = String::from_utf8_lossy(&out[head_end..]);
    let v: Value = serde_json::from_str(&payload).map_err(|e| format!("{e}: {payload}"))?;
    if let Some(err) = v["value"].get("error") {
        return Err(format!("{method} {path}: {err}: {}", v["value"]["message"]));
    }
    Ok(v["value"].clone())
}

impl Browser {
    /// Starts chromedriver in `ns` and a headless Chromium session whose
    /// profile lives in `dir`.
    pub fn start(ns: &Netns, dir: &Path) -> Browser {
        let port = 9515;
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let driver = ns
            .command("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("chromedriver (Debian package chromium-driver)");
        let until = Instant::now() + Duration::from_secs(30);
        while !listening(ns, port) {
            assert!(Instant::now() < until, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1280,1600",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = ns.run_in_thread(move || http(port, "POST", "/session", Some(&caps)));
        let v = v.unwrap_or_else(|e| panic!("new session: {e}"));
        let session = v["sessionId"].as_str().expect("sessionId").to_string();
        Browser {
            driver,
            port,
            session,
        }
    }

    fn call(
        &self,
        ns: &Netns,
        method: &str,
        rest: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let (port, path) = (self.port, format!("/session/{}{rest}", self.session));
        let method = method.to_string();
        ns.run_in_thread(move || http(port, &method, &path, body.as_ref()))
    }

    /// Opens `url`.
    pub fn open(&self, ns: &Netns, url: &str) {
        self.call(ns, "POST", "/url", Some(json!({ "url": url })))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The element `css` selects, once it exists (up to `timeout`).
    pub fn find(&self, ns: &Netns, css: &str, timeout: Duration) -> Option<String> {
        let until = Instant::now() + timeout;
        loop {
            let body = json!({"using": "css selector", "value": css});
            if let Ok(v) = self.call(ns, "POST", "/element", Some(body)) {
                if let Some(id) = v[ELEMENT].as_str() {
                    return Some(id.to_string());
                }
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The rendered text of the element `css` selects, waiting until
    /// `accept` takes it (up to `timeout`); the last text seen otherwise.
    pub fn text_when(
        &self,
        ns: &Netns,
        css: &str,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let until = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Some(id) = self.find(ns, css, Duration::ZERO) {
                if let Ok(v) = self.call(ns, "GET", &format!("/element/{id}/text"), None) {
                    last = v.as_str().unwrap_or_default().to_string();
                    if accept(&last) {
                        return last;
                    }
                }
            }
            if Instant::now() >= until {
                return last;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, ns: &Netns, css: &str) {
        let id = self
            .find(ns, css, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no element {css}"));
        self.call(ns, "POST", &format!("/element/{id}/click"), Some(json!({})))
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// The page's markup as the browser has it now.
    pub fn source(&self, ns: &Netns) -> String {
        self.call(ns, "GET", "/source", None)
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    /// Runs `script` in the page and returns its result.
    pub fn eval(&self, ns: &Netns, script: &str) -> Value {
        let body = json!({"script": script, "args": []});
        self.call(ns, "POST", "/execute/sync", Some(body))
            .unwrap_or_else(|e| panic!("script: {e}"))
    }

    /// A PNG of the window, written to `path`.
    pub fn screenshot(&self, ns: &Netns, path: &Path) {
        let v = self
            .call(ns, "GET", "/screenshot", None)
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        let png = base64(v.as_str().unwrap_or_default());
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let (port, path) = (self.port, format!("/session/{}", self.session));
        let _ = std::thread::spawn(move || http(port, "DELETE", &path, None)).join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Whether something listens on `port` of `ns`'s loopback.
fn listening(ns: &Netns, port: u16) -> bool {
    ns.run_in_thread(move || TcpStream::connect(("127.0.0.1", port)).is_ok())
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
