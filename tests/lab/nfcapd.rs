//! nfcapd, the collector of Debian's nfdump package, run by a test or a
//! benchmark in its namespace; `nfdump` reads what it stored.

use crate::Netns;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One flow record as `nfdump -o csv` prints it: column name → value.
pub type Row = HashMap<String, String>;

/// nfcapd running in a namespace, storing into its own directory.
pub struct Nfcapd {
    child: Child,
    dir: PathBuf,
}

impl Nfcapd {
    /// Starts nfcapd on 127.0.0.1:`port` in `ns`, storing into `dir`, with
    /// a socket buffer of `rcvbuf` bytes if given (capped by rmem_max), and
    /// waits until it has bound the port.
    pub fn start(ns: &Netns, port: u16, dir: &Path, rcvbuf: Option<u32>) -> Nfcapd {
        std::fs::create_dir_all(dir).unwrap();
        let mut args = vec![
            "-b".to_string(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-w".into(),
            crate::path_str(dir),
        ];
        if let Some(b) = rcvbuf {
            args.extend(["-B".to_string(), b.to_string()]);
        }
        let err = std::fs::File::create(dir.with_extension("stderr")).unwrap();
        let child = ns
            .spawn_in("nfcapd", &args, Stdio::null(), Stdio::from(err))
            .expect("nfcapd (Debian package nfdump) must be installed");
        let hex = format!(":{port:04X} ");
        assert!(
            crate::wait_until(Duration::from_secs(10), || ns
                .read_proc_net("udp")
                .is_ok_and(|t| t.contains(&hex))),
            "nfcapd did not bind port {port}"
        );
        Nfcapd {
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// Stops nfcapd (it writes its file at SIGTERM) and returns what
    /// `nfdump` reads from it: the csv rows and the `-I` stat text.
    pub fn stop(mut self) -> (Vec<Row>, String) {
        self.terminate();
        (self.rows(), self.stat())
    }

    /// Stops nfcapd and returns only the number of flows it stored (for
    /// runs too large to list).
    pub fn stop_count(mut self) -> u64 {
        self.terminate();
        stat_value(&self.stat(), "Flows").unwrap_or(0)
    }

    fn terminate(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }

    fn stat(&self) -> String {
        crate::check_output(
            "nfdump -I",
            Command::new("nfdump")
                .args(["-R", &crate::path_str(&self.dir), "-I"])
                .output(),
        )
    }

    fn rows(&self) -> Vec<Row> {
        let csv = crate::check_output(
            "nfdump -o csv",
            Command::new("nfdump")
                .args(["-R", &crate::path_str(&self.dir), "-o", "csv"])
                .env("TZ", "UTC")
                .output(),
        );
        let mut lines = csv.lines();
        let head: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect();
        lines
            .take_while(|l| !l.is_empty() && !l.starts_with("Summary"))
            .map(|l| {
                head.iter()
                    .cloned()
                    .zip(l.split(',').map(|v| v.trim().to_string()))
                    .collect()
            })
            .collect()
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

/// A `Name: number` line of `nfdump -I` output.
pub fn stat_value(stat: &str, name: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// A numeric column of a row.
pub fn num(row: &Row, k: &str) -> u64 {
    row[k]
        .parse()
        .unwrap_or_else(|_| panic!("{k}={} in {row:?}", row[k]))
}

/// An IP protocol number as nfdump prints it (`?` for one the tests do
/// not send).
pub fn proto_name(p: u64) -> &'static str {
    match p {
        1 => "ICMP",
        6 => "TCP",
        17 => "UDP",
        58 => "ICMP6",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stat_lines() {
        let t = "Ident: none\nFlows: 1234\nFlows_tcp: 3\n";
        assert_eq!(super::stat_value(t, "Flows"), Some(1234));
        assert_eq!(super::stat_value(t, "Flows_tcp"), Some(3));
        assert_eq!(super::stat_value(t, "Packets"), None);
    }
}
