//! NFCT → IPFIX over TCP, with a collector that is down at start and
//! restarts mid-run. Debian's nfcapd takes UDP only, so the collector is a
//! small reader here that decodes messages with the templates it receives
//! (it knows nothing of rulogd's layouts); tshark, capturing the same
//! connections, must decode the same sequence numbers and every flow once,
//! with nothing malformed.
//!
//! It checks what a collector relies on: every connection starts with the
//! templates, sequence numbers count the data records sent before each
//! message and continue across the reconnect, and every flow arrives
//! exactly once although the collector was away twice (the spool, on by
//! default, held them).
//!
//! Run: `cargo build -p rulogd && RULOGD_KERNEL_TESTS=1 cargo test -p
//! rulogd-tests --test ipfix_tcp` (root needed).

use rulogd_tests::traffic::udp_send;
use rulogd_tests::tshark::{check_clean, Tshark};
use rulogd_tests::{self as lab, Daemon, Netns, TempDir};
use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

const CONF: &str = concat!(
    lab::conf_global!("ct1:NFCT,ip1:IPFIX"),
    "\n\
[ct1]

[ip1]
oid=9
host=\"127.0.0.1\"
port={PORT}
"
);

/// One data record: the IEs it carries, by (enterprise, id).
type Fields = HashMap<(u32, u16), u64>;

/// What one connection delivered.
#[derive(Default)]
struct Session {
    /// (sequence number, data records, had a template set) per message.
    msgs: Vec<(u32, u32, bool)>,
    records: Vec<Fields>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// Decodes one message's sets into `s`, learning templates into `t`.
fn decode(m: &[u8], t: &mut HashMap<u16, Vec<(u32, u16, u16)>>, s: &mut Session) {
    assert_eq!(be16(m, 0), 10, "IPFIX version");
    assert_eq!(be32(m, 12), 9, "observation domain");
    let (mut off, mut n, mut tmpl) = (16, 0, false);
    while off + 4 <= m.len() {
        let (id, len) = (be16(m, off), be16(m, off + 2) as usize);
        assert!(
            len >= 4 && off + len <= m.len(),
            "set length {len} at {off}"
        );
        let body = &m[off + 4..off + len];
        if id == 2 {
            tmpl = true;
            let mut p = 0;
            while p + 4 <= body.len() {
                let (tid, count) = (be16(body, p), be16(body, p + 2));
                p += 4;
                let mut f = Vec::new();
                for _ in 0..count {
                    let (ie, flen) = (be16(body, p), be16(body, p + 2));
                    p += 4;
                    let pen = if ie & 0x8000 != 0 {
                        p += 4;
                        be32(body, p - 4)
                    } else {
                        0
                    };
                    f.push((pen, ie & 0x7fff, flen));
                }
                t.insert(tid, f);
            }
        } else if id >= 256 {
            let f = t.get(&id).expect("data set before its template");
            let rlen: usize = f.iter().map(|x| x.2 as usize).sum();
            for rec in body.chunks_exact(rlen) {
                let mut p = 0;
                let mut fields = Fields::new();
                for &(pen, ie, flen) in f {
                    let v = rec[p..p + flen as usize]
                        .iter()
                        .fold(0u64, |a, &b| a << 8 | b as u64);
                    fields.insert((pen, ie), v);
                    p += flen as usize;
                }
                s.records.push(fields);
                n += 1;
            }
        }
        off += len;
    }
    s.msgs.push((be32(m, 8), n, tmpl));
}

/// Accepts one connection on `l` and reads messages until `want` data
/// records came, then 500 ms more (anything extra would be a duplicate),
/// and closes the connection.
fn session(l: &TcpListener, want: usize, timeout: Duration) -> Session {
    l.set_nonblocking(true).unwrap();
    let end = Instant::now() + timeout;
    let mut c = loop {
        match l.accept() {
            Ok((c, _)) => break c,
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("no connection from rulogd: {e}"),
        }
    };
    c.set_nonblocking(false).unwrap();
    let (mut s, mut t, mut buf) = (Session::default(), HashMap::new(), Vec::new());
    let mut quiet_until = None;
    loop {
        let now = Instant::now();
        let limit = quiet_until.unwrap_or(end);
        if now >= limit {
            break;
        }
        c.set_read_timeout(Some(limit - now)).unwrap();
        let mut chunk = [0u8; 4096];
        match c.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(_) => break,
        }
        while buf.len() >= 16 && buf.len() >= be16(&buf, 2) as usize {
            let len = be16(&buf, 2) as usize;
            let m: Vec<u8> = buf.drain(..len).collect();
            decode(&m, &mut t, &mut s);
        }
        if quiet_until.is_none() && s.records.len() >= want {
            quiet_until = Some(Instant::now() + Duration::from_millis(500));
        }
    }
    assert!(buf.is_empty(), "a torn message at the end of the session");
    s
}

/// `n` one-way UDP flows from distinct source ports, ended by a flush.
fn flows(ns: &Netns, n: usize, dport: u16) -> Vec<u16> {
    let ports = ns.run_in_thread(|| {
        (0..n)
            .map(|i| udp_send(SocketAddr::from(([127, 0, 0, 1], dport)), i + 1, 50).unwrap())
            .collect()
    });
    ns.conntrack_flush();
    ports
}

#[test]
fn collector_down_at_start_and_restarted_loses_nothing_and_numbers_continue() {
    lab::skip_unless_root!();
    let ns = Netns::new("ipfixtcp").unwrap();
    ns.nft(
        "table inet t {\n chain in {\n  type filter hook input priority 0;\n  ct state new counter\n }\n}\n",
    )
    .unwrap();
    let st = ns
        .command("sysctl")
        .args(["-qw", "net.netfilter.nf_conntrack_acct=1"])
        .status()
        .unwrap();
    assert!(st.success());
    let dir = TempDir::new("ipfix-tcp");
    let port = lab::free_port();
    let conf = lab::fill(CONF, &[("PORT", port.to_string())]);
    let cap = Tshark::start(&ns, dir.path(), "tcp", &[port]);
    let d = Daemon::rulogd(&ns, dir.path(), &conf, &[], &[]);
    std::thread::sleep(Duration::from_millis(300));
    // The collector is not there yet.
    let first = flows(&ns, 5, 9000);
    std::thread::sleep(Duration::from_secs(1));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let a = ns.run_in_thread(|| {
        session(
            &TcpListener::bind(addr).unwrap(),
            5,
            Duration::from_secs(15),
        )
    });
    // It went away (connection and listener closed); flows end meanwhile.
    let second = flows(&ns, 4, 9001);
    std::thread::sleep(Duration::from_secs(2));
    let b = ns.run_in_thread(|| {
        session(
            &TcpListener::bind(addr).unwrap(),
            4,
            Duration::from_secs(15),
        )
    });
    d.stop();
    // The reader's decoding, cross-checked by tshark's on the same bytes:
    // the same sequence numbers, every flow once, nothing malformed.
    let decoded = cap.decode();
    check_clean(&decoded);
    let tseq: Vec<u32> = decoded
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FlowSequence: "))
        .map(|v| v.parse().unwrap())
        .collect();
    let ours: Vec<u32> = a.msgs.iter().chain(&b.msgs).map(|m| m.0).collect();
    assert_eq!(tseq, ours, "sequence numbers, tshark and the reader");
    for p in first.iter().chain(&second) {
        let n = decoded
            .lines()
            .filter(|l| l.trim() == format!("SrcPort: {p}"))
            .count();
        assert_eq!(n, 1, "flow from port {p} in tshark's decode");
    }
    let mut seq = 0u32;
    for (i, s) in [&a, &b].iter().enumerate() {
        assert!(s.msgs[0].2, "session {i}: templates first: {:?}", s.msgs);
        for &(n, records, _) in &s.msgs {
            assert_eq!(n, seq, "session {i}: sequence numbers {:?}", s.msgs);
            seq += records;
        }
    }
    // rulogd's own connection attempts to the collector are flows too.
    let ours = |r: &&Fields| r[&(0, 4)] == 17 && (9000..=9001).contains(&r[&(0, 11)]);
    let got = |s: &Session| -> Vec<(u64, u64)> {
        let mut v: Vec<_> = s
            .records
            .iter()
            .filter(ours)
            .map(|r| (r[&(0, 7)], r[&(0, 2)]))
            .collect();
        v.sort();
        v
    };
    let want = |ports: &[u16]| -> Vec<(u64, u64)> {
        let mut v: Vec<_> = ports
            .iter()
            .enumerate()
            .map(|(i, &p)| (p as u64, i as u64 + 1))
            .collect();
        v.sort();
        v
    };
    let all: Vec<_> = a
        .records
        .iter()
        .map(|r| (r[&(0, 4)], r[&(0, 7)], r[&(0, 11)]))
        .collect();
    assert_eq!(
        got(&a),
        want(&first),
        "flows made while the collector was down: {all:?}"
    );
    assert_eq!(got(&b), want(&second), "flows made while it restarted");
    // Biflow by default: the reverse counts (PEN 29305) are there, 0 here.
    // flowId is conntrack's id: set, and different for every flow.
    let mut ids: Vec<u64> = a
        .records
        .iter()
        .chain(&b.records)
        .filter(ours)
        .map(|r| r[&(0, 148)])
        .collect();
    ids.sort();
    ids.dedup();
    assert!(
        ids.len() == first.len() + second.len() && ids[0] != 0,
        "{ids:?}"
    );
    assert!(a
        .records
        .iter()
        .filter(ours)
        .all(|r| r.get(&(29305, 2)) == Some(&0)));
}
