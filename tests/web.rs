//! WEB in headless Chromium: a capture file with known flows in each
//! direction goes through CAPTURE → BASE → FLOW (home_net) into WEB and
//! into JSON; the page's totals and top hosts, read from the DOM, equal the
//! flow records JSON wrote; a click on a host opens its panel; a log prefix
//! with markup in it (from NFLOG packets in the same daemon) is shown as
//! text. A screenshot is kept under the target directory.

use rulogd_tests as lab;
use rulogd_tests::webdriver::Browser;
use rulogd_tests::{Daemon, Kind, Netns, Record};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

const GROUP: u16 = 41;
const PORT: u16 = 8475;
const PREFIX: &str = "<script>document.title=42</script>";

const CONF: &str = concat!(
    lab::conf_global!(
        "cap1:CAPTURE,base1:BASE,flow1:FLOW,ip2str1:IP2STR,json1:JSON",
        "cap1:CAPTURE,base1:BASE,flow1:FLOW,web1:WEB",
        "log1:NFLOG,base2:BASE,web1:WEB"
    ),
    "\n\
[cap1]
file=\"{PCAP}\"

[flow1]
home_net=\"10.0.0.0/8, fd00::/8\"

[log1]
group={GROUP}

[json1]
file=\"{JSON}\"

[web1]
address=\"127.0.0.1:{PORT}\"
bin_seconds=10
"
);

/// The time of the file's first packet; the flows' own clock.
const T0: u32 = 1_700_000_000;

/// One UDP flow: initiator, responder, ports, and its packets' payload
/// sizes each way.
struct Spec {
    src: &'static str,
    dst: &'static str,
    sport: u16,
    dport: u16,
    orig: &'static [usize],
    reply: &'static [usize],
}

const FLOWS: [Spec; 5] = [
    // inbound
    Spec {
        src: "198.51.100.7",
        dst: "10.0.0.5",
        sport: 40000,
        dport: 80,
        orig: &[100, 100, 100],
        reply: &[1400, 1400, 1400, 900],
    },
    // outbound
    Spec {
        src: "10.0.0.5",
        dst: "203.0.113.9",
        sport: 50000,
        dport: 443,
        orig: &[1200; 10],
        reply: &[60; 5],
    },
    // internal
    Spec {
        src: "10.0.0.5",
        dst: "10.0.0.6",
        sport: 50001,
        dport: 22,
        orig: &[300, 300],
        reply: &[300, 300],
    },
    // external
    Spec {
        src: "198.51.100.7",
        dst: "203.0.113.9",
        sport: 40001,
        dport: 53,
        orig: &[80],
        reply: &[120],
    },
    // inbound, IPv6
    Spec {
        src: "2001:db8::7",
        dst: "fd00::5",
        sport: 40002,
        dport: 8080,
        orig: &[500; 3],
        reply: &[700; 3],
    },
];

fn frame(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    let udp_len = 8 + payload;
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend(sport.to_be_bytes());
    udp.extend(dport.to_be_bytes());
    udp.extend((udp_len as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.resize(udp_len, 0x61);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend([0x08, 0x00]);
            let total = (20 + udp_len) as u16;
            let mut ip = vec![0x45, 0];
            ip.extend(total.to_be_bytes());
            ip.extend([0, 1, 0x40, 0, 64, 17, 0, 0]);
            ip.extend(s.octets());
            ip.extend(d.octets());
            let mut sum: u32 = ip
                .chunks(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .sum();
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            f.extend(ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend([0x86, 0xdd]);
            f.extend([0x60, 0, 0, 0]);
            f.extend((udp_len as u16).to_be_bytes());
            f.extend([17, 64]);
            f.extend(s.octets());
            f.extend(d.octets());
        }
        _ => unreachable!("one family per flow"),
    }
    f.extend(udp);
    f
}

/// Writes the flows as a pcap (Ethernet), a packet every 0.4 s, each
/// flow's packets alternating orig/reply; returns per direction class the
/// IP bytes and packets the file holds.
fn write_pcap(path: &Path) -> BTreeMap<&'static str, (u64, u64)> {
    let mut out = Vec::new();
    for v in [0xa1b2_c3d4u32.to_le_bytes(), 0x0004_0002u32.to_le_bytes()] {
        out.extend(v);
    }
    out.extend([0u8; 8]);
    out.extend(65535u32.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    let classes = ["inbound", "outbound", "internal", "external", "inbound"];
    let mut want: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut t_ms: u64 = 0;
    for (spec, class) in FLOWS.iter().zip(classes) {
        let (s, d): (IpAddr, IpAddr) = (spec.src.parse().unwrap(), spec.dst.parse().unwrap());
        let hdr = if s.is_ipv4() { 28 } else { 48 };
        let n = spec.orig.len().max(spec.reply.len());
        for i in 0..n {
            let mut pkts = Vec::new();
            if let Some(&p) = spec.orig.get(i) {
                pkts.push(frame(s, d, spec.sport, spec.dport, p));
                let e = want.entry(class).or_default();
                *e = (e.0 + (hdr + p) as u64, e.1 + 1);
            }
            if let Some(&p) = spec.reply.get(i) {
                pkts.push(frame(d, s, spec.dport, spec.sport, p));
                let e = want.entry(class).or_default();
                *e = (e.0 + (hdr + p) as u64, e.1 + 1);
            }
            for p in pkts {
                let sec = T0 + (t_ms / 1000) as u32;
                let usec = ((t_ms % 1000) * 1000) as u32;
                out.extend(sec.to_le_bytes());
                out.extend(usec.to_le_bytes());
                out.extend((p.len() as u32).to_le_bytes());
                out.extend((p.len() as u32).to_le_bytes());
                out.extend(&p);
                t_ms += 400;
            }
        }
    }
    std::fs::write(path, out).unwrap();
    want
}

fn get(ns: &Netns, path: &str) -> Value {
    let path = path.to_string();
    ns.run_in_thread(move || {
        let mut s = TcpStream::connect(("127.0.0.1", PORT)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(
            head.contains("Content-Security-Policy: default-src 'self'"),
            "{head}"
        );
        serde_json::from_str(body).unwrap()
    })
}

fn raw(ns: &Netns, req: &str) -> String {
    let req = req.to_string();
    ns.run_in_thread(move || {
        let mut s = TcpStream::connect(("127.0.0.1", PORT)).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
}

fn digits(s: &str) -> u64 {
    s.chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

#[test]
fn the_page_shows_the_flows_by_direction_and_a_host_on_click() {
    let (ns, dir) = lab::netns_or_skip!("web");
    let d = dir.path();
    let pcap = d.join("flows.pcap");
    let want = write_pcap(&pcap);
    let json = d.join("flows.json");
    let conf = lab::fill(
        CONF,
        &[
            ("PCAP", lab::path_str(&pcap)),
            ("JSON", lab::path_str(&json)),
            ("GROUP", GROUP.to_string()),
            ("PORT", PORT.to_string()),
        ],
    );
    ns.nft(&format!(
        "table inet t {{\n chain o {{\n type filter hook output priority 0;\n udp dport 9999 log prefix \"{PREFIX}\" group {GROUP}\n }}\n}}\n"
    ))
    .unwrap();
    let daemon = Daemon::start(&ns, Kind::Rulogd, d, "web", &conf, &[GROUP], &[&json]);
    // The file's flows are ended (forced) when it has been read.
    let records = || -> Vec<Record> { rulogd_tests::json::read_records_lenient(&json).0 };
    assert!(
        lab::wait_until(Duration::from_secs(20), || records().len() == FLOWS.len()),
        "flow records: {:?}\n{}",
        records().len(),
        daemon.log_text()
    );
    let recs = records();
    // The JSON records: the file's flows, exactly, each with its direction.
    let mut from_json: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in &recs {
        let e = from_json
            .entry(r.req_str("flow.direction").to_string())
            .or_default();
        e.0 += r.req_u64("orig.raw.pktlen") + r.req_u64("reply.raw.pktlen");
        e.1 += r.req_u64("orig.raw.pktcount") + r.req_u64("reply.raw.pktcount");
    }
    let want: BTreeMap<String, (u64, u64)> =
        want.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(from_json, want, "FLOW's records against the file");

    // Logged packets under a prefix with markup.
    ns.run_in_thread(|| {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..3 {
            s.send_to(&[0u8; 72], "127.0.0.1:9999").unwrap();
        }
    });

    // The endpoints agree with the JSON records.
    let series = get(&ns, "/api/series?window=3600");
    for (class, (bytes, pkts)) in &want {
        assert_eq!(
            series["classes"][class]["total_bytes"], *bytes,
            "{class}: {series}"
        );
        assert_eq!(series["classes"][class]["total_packets"], *pkts, "{class}");
    }
    let top = get(&ns, "/api/top?window=3600");
    let host5 = &top["hosts_sent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "10.0.0.5")
        .cloned()
        .expect("10.0.0.5 in the top senders");
    let (mut sent5, mut recv5) = (0, 0);
    for r in &recs {
        let (o, p) = (r.req_u64("orig.raw.pktlen"), r.req_u64("reply.raw.pktlen"));
        if r.req_str("src_ip") == "10.0.0.5" {
            (sent5, recv5) = (sent5 + o, recv5 + p);
        }
        if r.req_str("dest_ip") == "10.0.0.5" {
            (sent5, recv5) = (sent5 + p, recv5 + o);
        }
    }
    assert_eq!(
        (host5["sent"].as_u64(), host5["received"].as_u64()),
        (Some(sent5), Some(recv5))
    );
    assert!(
        lab::wait_until(Duration::from_secs(10), || {
            get(&ns, "/api/top")["prefixes"][0]["packets"] == 3
        }),
        "{}",
        get(&ns, "/api/top")
    );
    // Read-only, and a bad request is refused.
    assert!(raw(&ns, "POST /api/series HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(raw(&ns, "GET /api/host?ip=nonsense HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));

    // The page, in Chromium.
    let b = Browser::start(&ns, d);
    b.open(&ns, &format!("http://127.0.0.1:{PORT}/"));
    let sel =
        |class: &str, col: usize| format!("#totals tr[data-class={class}] td:nth-child({col})");
    for (class, (bytes, pkts)) in &want {
        let shown = b.text_when(&ns, &sel(class, 2), Duration::from_secs(20), |t| {
            digits(t) == *bytes
        });
        assert_eq!(
            digits(&shown),
            *bytes,
            "{class} bytes on the page: {shown:?}"
        );
        assert_eq!(
            digits(&b.text_when(&ns, &sel(class, 3), Duration::ZERO, |_| true)),
            *pkts
        );
    }
    let first_sender = b.text_when(
        &ns,
        "#top-sent tbody tr:first-child td:first-child",
        Duration::from_secs(10),
        |t| !t.is_empty(),
    );
    let top_sender = top["hosts_sent"][0]["host"].as_str().unwrap().to_string();
    assert_eq!(first_sender, top_sender);
    // The prefix is text, and its script never ran.
    let shown = b.text_when(
        &ns,
        "#top-prefixes tbody tr:first-child td:first-child",
        Duration::from_secs(10),
        |t| t == PREFIX,
    );
    assert_eq!(shown, PREFIX);
    assert_eq!(b.eval(&ns, "return document.title"), "rulogd traffic");
    assert_eq!(b.eval(&ns, "return document.scripts.length"), 1);
    // A click on 10.0.0.5 opens its panel with its totals.
    b.click(&ns, "#top-sent a.host[data-host='10.0.0.5']");
    let name = b.text_when(&ns, "#host-name", Duration::from_secs(10), |t| {
        t == "10.0.0.5"
    });
    assert_eq!(name, "10.0.0.5");
    let sent = b.text_when(&ns, "#host-sent", Duration::from_secs(10), |t| {
        digits(t) == sent5
    });
    assert_eq!(digits(&sent), sent5);
    assert_eq!(
        digits(&b.text_when(&ns, "#host-received", Duration::ZERO, |_| true)),
        recv5
    );
    let peers = b.text_when(&ns, "#host-peers", Duration::from_secs(5), |t| {
        t.contains("203.0.113.9")
    });
    assert!(
        peers.contains("203.0.113.9") && peers.contains("10.0.0.6"),
        "{peers}"
    );
    // The daemon's own counters are on the page.
    let stats = b.text_when(&ns, "#stats", Duration::from_secs(5), |t| {
        t.contains("cap1")
    });
    assert!(stats.contains("cap1") && stats.contains("web1"), "{stats}");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-view.png");
    b.screenshot(&ns, &shot);
    std::fs::copy(&shot, d.join("web-view.png")).unwrap();
    drop(b);
    daemon.stop();
}
