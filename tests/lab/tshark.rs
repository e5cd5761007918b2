//! tshark capturing IPFIX exports in a namespace and decoding them, so
//! tests can check that a real dissector reads every message.

use crate::Netns;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// tshark capturing traffic to `ports` (UDP or TCP) on the namespace's
/// loopback.
pub struct Tshark {
    child: Child,
    file: PathBuf,
    proto: &'static str,
    ports: Vec<u16>,
}

impl Tshark {
    /// Starts capturing `proto` (`udp` or `tcp`) to `ports` into
    /// `dir/export.pcap`; returns once tshark says it is capturing.
    pub fn start(ns: &Netns, dir: &Path, proto: &'static str, ports: &[u16]) -> Tshark {
        let file = dir.join(format!("export-{proto}.pcap"));
        let err = dir.join(format!("tshark-{proto}.stderr"));
        let filter = ports
            .iter()
            .map(|p| format!("{proto} port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let args = ["-i", "lo", "-f", &filter, "-w", &crate::path_str(&file)];
        let child = ns
            .spawn_in(
                "tshark",
                args,
                Stdio::null(),
                Stdio::from(std::fs::File::create(&err).expect("tshark stderr file")),
            )
            .expect("tshark (Debian package tshark) must be installed");
        let mut t = Tshark {
            child,
            file,
            proto,
            ports: ports.to_vec(),
        };
        let up = crate::wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&err).is_ok_and(|t| t.contains("Capturing on"))
        });
        if !up {
            let _ = t.child.kill();
            let _ = t.child.wait();
            panic!(
                "tshark did not start: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        t
    }

    /// Stops the capture and returns tshark's full decode (`-V`) of it,
    /// every captured port decoded as IPFIX.
    pub fn decode(mut self) -> String {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let mut c = std::process::Command::new("tshark");
        c.args(["-r", &crate::path_str(&self.file), "-V"]);
        for p in &self.ports {
            c.args(["-d", &format!("{}.port=={p},cflow", self.proto)]);
        }
        crate::check_output("tshark -r", c.output())
    }
}

impl Drop for Tshark {
    fn drop(&mut self) {
        // A test that panicked before decode must not leave tshark behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts tshark found nothing malformed and no expert warning (but TCP
/// sequence notes) or error,
/// and that it decoded IPFIX (version 10) messages at all.
pub fn check_clean(text: &str) {
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| {
            // TCP's own notes (the RSTs of refused connects while the
            // collector is down) are not about the messages.
            let tcp = l.contains("Expert Info (Warning/Sequence)");
            l.contains("Malformed")
                || (l.contains("Expert Info (Warn") && !tcp)
                || l.contains("Expert Info (Error")
        })
        .collect();
    assert!(bad.is_empty(), "tshark complains: {bad:#?}\n{text}");
    assert!(
        text.lines().any(|l| l.trim() == "Version: 10"),
        "no IPFIX message decoded\n{text}"
    );
}
