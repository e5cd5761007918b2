//! Capture programs (tcpdump, dumpcap) writing files of a test's traffic.

use crate::Netns;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running capture program and where its messages go.
pub struct Capture {
    child: Child,
    stderr: PathBuf,
}

/// Arguments for tcpdump that hand every packet over at once (without
/// --immediate-mode a SIGINT loses the ring's unfinished block) into a ring
/// with room for a burst of loopback's 64 KiB GSO frames: at the default
/// snap length of 256 KiB each frame slot is that large and an 8 MiB ring
/// holds only 32 of them, so the kernel dropped packets of a busy moment.
pub const TCPDUMP_ARGS: [&str; 7] = ["--immediate-mode", "-s", "65600", "-B", "65536", "-U", "-n"];

/// Starts `program args…` in `ns` (its stderr to `dir/<program>.stderr`)
/// and waits until it says it listens.
pub fn start(ns: &Netns, program: &str, args: &[&str], dir: &Path) -> Capture {
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
            return Capture {
                child: c,
                stderr: err,
            };
        }
        assert!(c.try_wait().unwrap().is_none(), "{program} exited: {text}");
        assert!(Instant::now() < until, "{program} did not start: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// tcpdump on `lo` of `ns` into `pcap`.
pub fn tcpdump_lo(ns: &Netns, pcap: &Path, dir: &Path) -> Capture {
    let p = crate::path_str(pcap);
    let mut args = vec!["-i", "lo"];
    args.extend(TCPDUMP_ARGS);
    args.extend(["-w", &p]);
    start(ns, "tcpdump", &args, dir)
}

/// Lets the last packets reach the program, then stops it with SIGINT so
/// it writes out its file; panics when the kernel dropped packets, so a
/// lossy capture reads as what it is rather than as wrong flow counts.
pub fn stop(c: Capture) {
    let Capture { mut child, stderr } = c;
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on a child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = child.wait().unwrap();
    assert!(st.success() || st.code().is_none(), "{st:?}");
    let text = std::fs::read_to_string(&stderr).unwrap_or_default();
    if let Some(n) = dropped(&text) {
        assert_eq!(n, 0, "the capture lost packets: {text}");
    }
}

/// The kernel's drop count in tcpdump's or dumpcap's exit summary.
fn dropped(text: &str) -> Option<u64> {
    for l in text.lines() {
        // tcpdump: "3 packets dropped by kernel".
        if let Some(n) = l.strip_suffix(" packets dropped by kernel") {
            return n.trim().parse().ok();
        }
        // dumpcap: "… received/dropped on interface 'Loopback: lo': 72/0 (…".
        if let Some((_, rest)) = l.split_once("received/dropped on interface") {
            let counts = rest.split_once("': ")?.1.split_whitespace().next()?;
            return counts.split_once('/')?.1.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn drop_counts_of_both_programs() {
        let t =
            "72 packets captured\n200 packets received by filter\n56 packets dropped by kernel\n";
        assert_eq!(super::dropped(t), Some(56));
        let d = "Packets captured: 9\nPackets received/dropped on interface 'Loopback: lo': 9/2 (pcap:2/dumpcap:0/flushed:0/ps_ifdrop:0) (81.8%)\n";
        assert_eq!(super::dropped(d), Some(2));
        assert_eq!(super::dropped("listening on lo"), None);
    }
}
