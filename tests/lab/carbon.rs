//! A carbon-cache of the test's own (Debian's graphite-carbon), listening on
//! 127.0.0.1:2003 inside a namespace and storing whisper files under a temp
//! directory, read back with python3-whisper's whisper-fetch.

use crate::Netns;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A carbon-cache of our own, in the namespace, storing under `dir`.
pub struct Carbon {
    conf: PathBuf,
    child: Option<Child>,
    terminated: bool,
    whisper: PathBuf,
}

impl Carbon {
    /// Whether carbon-cache and whisper-fetch are installed.
    pub fn available() -> bool {
        Path::new("/usr/bin/carbon-cache").exists() && Path::new("/usr/bin/whisper-fetch").exists()
    }

    /// Whether a carbon test can run: carbon is installed, or the test is
    /// skipped with a message; where kernel tests are required (CI,
    /// `RULOGD_KERNEL_TESTS=1`) a missing carbon is a failure.
    pub fn ready() -> bool {
        if Self::available() {
            return true;
        }
        let forced = std::env::var_os("CI").is_some()
            || std::env::var("RULOGD_KERNEL_TESTS").as_deref() == Ok("1");
        if forced {
            panic!("install graphite-carbon and python3-whisper (scripts/test-all.sh does)");
        }
        eprintln!("skipped: graphite-carbon / python3-whisper not installed");
        false
    }

    /// Writes its configuration under `dir` (one-second retention); not started.
    pub fn new(dir: &Path) -> Carbon {
        let d = crate::path_str(dir);
        let conf = dir.join("carbon.conf");
        std::fs::write(
            &conf,
            format!(
                "[cache]\nSTORAGE_DIR = {d}/storage/\nLOCAL_DATA_DIR = {d}/storage/whisper/\n\
                 WHITELISTS_DIR = {d}/storage/lists/\nCONF_DIR = {d}/\nLOG_DIR = {d}/log/\n\
                 PID_DIR = {d}/\nENABLE_LOGROTATION = False\nUSER =\nMAX_CACHE_SIZE = inf\n\
                 MAX_UPDATES_PER_SECOND = inf\nMAX_CREATES_PER_MINUTE = inf\n\
                 LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = 2003\n\
                 ENABLE_UDP_LISTENER = False\nPICKLE_RECEIVER_INTERFACE = 127.0.0.1\n\
                 PICKLE_RECEIVER_PORT = 2004\nCACHE_QUERY_INTERFACE = 127.0.0.1\n\
                 CACHE_QUERY_PORT = 7002\nLOG_UPDATES = False\nWHISPER_AUTOFLUSH = True\n"
            ),
        )
        .unwrap();
        // One-second resolution: every poll is its own datapoint.
        std::fs::write(
            dir.join("storage-schemas.conf"),
            "[all]\npattern = .*\nretentions = 1s:1h\n",
        )
        .unwrap();
        Carbon {
            conf,
            child: None,
            terminated: false,
            whisper: dir.join("storage/whisper"),
        }
    }

    /// Starts it in `ns` and waits until it listens on 2003.
    pub fn start(&mut self, ns: &Netns) {
        let log = std::fs::File::create(self.conf.with_extension("out")).unwrap();
        let _ = std::fs::remove_file(self.conf.with_file_name("carbon-cache-a.pid"));
        let child = ns
            .command("carbon-cache")
            .arg(format!("--config={}", crate::path_str(&self.conf)))
            .args(["--nodaemon", "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start carbon-cache");
        self.child = Some(child);
        let up = crate::wait_until(Duration::from_secs(20), || {
            ns.read_proc_net("tcp")
                .unwrap_or_default()
                .lines()
                .any(|l| {
                    // 127.0.0.1:2003 (0100007F:07D3) in LISTEN (0A).
                    l.contains("0100007F:07D3 00000000:0000 0A")
                })
        });
        assert!(up, "carbon-cache did not listen on 2003: {}", self.log());
    }

    /// Sends SIGTERM and returns at once: it closes its connections a few
    /// milliseconds later, so lines written right now are what a restart
    /// loses. [`Carbon::stop`] waits for the exit.
    pub fn terminate(&mut self) {
        if let Some(c) = &self.child {
            if !self.terminated {
                // SAFETY: kill(2) on our unreaped child.
                unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
                self.terminated = true;
            }
        }
    }

    /// SIGSTOP: it hangs; its kernel still takes (and ACKs) what is sent
    /// until the receive buffer is full.
    pub fn freeze(&self) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our unreaped child.
            unsafe { libc::kill(c.id() as i32, libc::SIGSTOP) };
        }
    }

    /// SIGKILL (as an init system does when a stop times out) and waits:
    /// what sits in its receive buffer and its cache is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.terminated = false;
    }

    /// SIGTERM, as an init system stops it (it writes its cache out first),
    /// and waits until it has exited.
    pub fn stop(&mut self) {
        self.terminate();
        self.terminated = false;
        if let Some(mut c) = self.child.take() {
            let t = Instant::now();
            while c.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(15) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What it printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.conf.with_extension("out")).unwrap_or_default()
    }

    /// Every non-empty datapoint of `metric` (a.b.c) as (timestamp, value).
    pub fn fetch(&self, metric: &str) -> BTreeMap<u64, f64> {
        let path = self.whisper.join(metric.replace('.', "/") + ".wsp");
        let mut m = BTreeMap::new();
        let Ok(out) = Command::new("whisper-fetch")
            .arg("--from=0")
            .arg(&path)
            .stderr(Stdio::null())
            .output()
        else {
            return m;
        };
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let mut f = l.split_whitespace();
            if let (Some(t), Some(v)) = (f.next(), f.next()) {
                if let (Ok(t), Ok(v)) = (t.parse(), v.parse()) {
                    m.insert(t, v);
                }
            }
        }
        m
    }
}

impl Drop for Carbon {
    fn drop(&mut self) {
        self.stop();
    }
}
