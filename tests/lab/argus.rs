//! Argus (Debian's argus-server and argus-client) as the oracle of the
//! FLOW tests: `argus -r` over a capture file, `ra` printing its flows.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// A flow as `ra` names it: protocol, source address and port, destination
/// address and port (ports 0 for protocols without them).
pub type Key = (u8, String, u16, String, u16);

/// Argus's flows of `pcap` (its file written into `dir`): packets from the
/// source and from the destination, summed over records of one key.
pub fn flows(dir: &Path, pcap: &Path) -> BTreeMap<Key, (u64, u64)> {
    let out_file = dir.join("out.argus");
    let st = Command::new("argus")
        .arg("-r")
        .arg(pcap)
        .arg("-w")
        .arg(&out_file)
        .status()
        .expect("argus (Debian's argus-server)");
    assert!(st.success());
    let out = Command::new("ra")
        .arg("-r")
        .arg(&out_file)
        .args(["-n", "-u", "-c", ",", "-s", "proto", "saddr", "sport"])
        .args(["daddr", "dport", "spkts", "dpkts"])
        .output()
        .expect("ra (Debian's argus-client)");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut m = BTreeMap::new();
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        if f.len() < 7 {
            continue;
        }
        let proto = match f[0] {
            "tcp" => 6,
            "udp" => 17,
            "icmp" => 1,
            "ipv6-icmp" | "icmp6" => 58,
            p => p.parse().unwrap_or(0),
        };
        let port = |s: &str| -> u16 {
            if proto == 6 || proto == 17 {
                s.parse().unwrap_or(0)
            } else {
                0
            }
        };
        let key = (
            proto,
            f[1].to_string(),
            port(f[2]),
            f[3].to_string(),
            port(f[4]),
        );
        let e: &mut (u64, u64) = m.entry(key).or_default();
        e.0 += f[5].parse::<u64>().unwrap_or(0);
        e.1 += f[6].parse::<u64>().unwrap_or(0);
    }
    m
}
