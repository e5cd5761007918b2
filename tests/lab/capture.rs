//! Capture programs (tcpdump, dumpcap) writing files of a test's traffic.

use crate::Netns;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Starts `program args…` in `ns` (its stderr to `dir/<program>.stderr`)
/// and waits until it says it listens.
pub fn start(ns: &Netns, program: &str, args: &[&str], dir: &Path) -> Child {
    let err = dir.join(format!("{program}.stderr"));
    let mut c = ns
        .command(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&err).unwrap_or_default();
        if text.contains("listening on") || text.contains("Capturing on") {
            return c;
        }
        assert!(c.try_wait().unwrap().is_none(), "{program} exited: {text}");
        assert!(Instant::now() < until, "{program} did not start: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// tcpdump on `lo` of `ns` into `pcap`, every packet handed over at once
/// (without --immediate-mode a SIGINT loses the ring's unfinished block).
pub fn tcpdump_lo(ns: &Netns, pcap: &Path, dir: &Path) -> Child {
    let p = crate::path_str(pcap);
    let args = [
        "-i",
        "lo",
        "--immediate-mode",
        "-B",
        "8192",
        "-U",
        "-n",
        "-w",
        &p,
    ];
    start(ns, "tcpdump", &args, dir)
}

/// Lets the last packets reach the program, then stops it with SIGINT so
/// it writes out its file.
pub fn stop(mut c: Child) {
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on a child we spawned.
    unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
    let st = c.wait().unwrap();
    assert!(st.success() || st.code().is_none(), "{st:?}");
}
