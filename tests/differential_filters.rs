//! HWHDR, PRINTPKT, MARK and PWSNIFF: ulogd2 and rulogd side by side.
//!
//! As in differential_json.rs, every logging rule comes twice, logging the
//! same packet to two NFLOG groups: ulogd2 reads the first, rulogd the
//! second, with the same ulogd.conf apart from the group and the output
//! file, and the JSON files are compared record by record, key by key. The
//! traffic crosses a veth pair, so packets received from the peer carry a
//! real Ethernet header (raw.mac) and sender address (raw.mac.saddr).
//!
//! Run: `cargo build --release -p rulogd && RULOGD_KERNEL_TESTS=1 cargo test
//! -p rulogd-tests --test differential_filters` (root needed).
//! `RULOGD_BIN=/usr/sbin/ulogd` compares ulogd with itself.

use rulogd_tests::traffic::{icmp_echo, tcp_client, tcp_listen, tcp_serve_once, udp_send};
use rulogd_tests::{self as lab, daemon, netns, Daemon, Kind, Netns, Record, TempDir};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// Keys whose values may differ, each a deliberate difference documented
/// in docs/COMPATIBILITY.md (BASE section): ulogd2 2.0.8 prints 0 for
/// `tcp.offset` and `tcp.reserved` and never sets `ahesp.spi`.
const ALLOWED_DIFFERENCES: &[&str] = &["tcp.offset", "tcp.reserved", "ahesp.spi"];

/// One stack, `{FILTERS}` between NFLOG and JSON; `{EXTRA}` holds more
/// sections (MARK's options).
const CONF: &str = concat!(
    lab::conf_global!("log1:NFLOG,{FILTERS},json1:JSON"),
    "\n",
    lab::conf_nflog!(),
    "\n\
[json1]
file=\"{FILE}\"
sync=1
{EXTRA}"
);

/// ulogd2 on group `g`, rulogd on `g + 1`, both in `ns`.
struct Pair {
    dir: TempDir,
    daemons: [Daemon; 2],
    files: [PathBuf; 2],
    groups: [u16; 2],
}

impl Pair {
    fn start(ns: &Netns, tag: &str, g: u16, filters: &str, extra: &str) -> Pair {
        let dir = TempDir::new(tag);
        let files = [
            dir.path().join("ulogd.json"),
            dir.path().join("rulogd.json"),
        ];
        let groups = [g, g + 1];
        let start = |i: usize, kind: Kind, name: &str| {
            let conf = lab::fill(
                CONF,
                &[
                    ("FILTERS", filters.to_string()),
                    ("GROUP", groups[i].to_string()),
                    ("FILE", lab::path_str(&files[i])),
                    ("EXTRA", extra.to_string()),
                ],
            );
            Daemon::start(
                ns,
                kind,
                dir.path(),
                name,
                &conf,
                &[groups[i]],
                &[&files[i]],
            )
        };
        let daemons = [
            start(0, Kind::Ulogd, "ulogd"),
            start(1, Kind::Rulogd, "rulogd"),
        ];
        Pair {
            dir,
            daemons,
            files,
            groups,
        }
    }

    /// Waits until both daemons have read everything, stops them and
    /// returns (ulogd2's, rulogd's) records.
    fn stop(self, ns: &Netns) -> (Vec<Record>, Vec<Record>, TempDir) {
        let [u, r] = &self.files;
        daemon::settle(ns, &self.groups, || {
            lab::count_lines(u) == lab::count_lines(r)
        });
        let [du, dr] = self.daemons;
        du.stop();
        dr.stop();
        (lab::read_records(u), lab::read_records(r), self.dir)
    }
}

/// Compares the two streams, panicking with the report and the kept files.
fn compare(u: &[Record], r: &[Record], dir: &TempDir) {
    assert!(!u.is_empty(), "ulogd2 wrote nothing");
    if let Err(report) = lab::compare_streams(u, r, ALLOWED_DIFFERENCES, ("ulogd2", "rulogd")) {
        panic!(
            "ulogd2 and rulogd differ ({} vs {} records)\n{report}\nfiles kept in {}",
            u.len(),
            r.len(),
            dir.path().display()
        );
    }
}

/// `rule` twice, logging to `g` then `g + 1`; `{G}` in `rule` is the group.
fn twice(rule: &str, g: u16) -> String {
    format!(
        "  {}\n  {}\n",
        rule.replace("{G}", &g.to_string()),
        rule.replace("{G}", &(g + 1).to_string())
    )
}

/// Input and output chains of table `t` logging everything with prefixes
/// IN and OUT, after `pre_in` (rules of the input chain that come first).
fn in_out_rules(g: u16, pre_in: &str) -> String {
    let quiet = lab::QUIET_MULTICAST;
    format!(
        "table inet t {{\n chain in {{\n  type filter hook input priority 0;\n{quiet}{pre_in}{}  udp dport 9999 drop\n }}\n\
         \x20chain out {{\n  type filter hook output priority 0;\n{quiet}{} }}\n}}\n",
        twice("log prefix \"IN\" group {G}", g),
        twice("log prefix \"OUT\" group {G}", g),
    )
}

/// TCP, UDP and ICMP echo, IPv4 and IPv6, across the veth (both ways) and
/// over loopback.
fn veth_traffic(ns: &Netns, port: u16) {
    let listener = ns
        .run_in_peer(|| tcp_listen(format!("{}:{port}", netns::PEER_V4).parse().unwrap()).unwrap());
    let server = tcp_serve_once(listener, 300);
    let listener6 = ns.run_in_peer(|| {
        tcp_listen(format!("[{}]:{port}", netns::PEER_V6).parse().unwrap()).unwrap()
    });
    let server6 = tcp_serve_once(listener6, 200);
    ns.run_in_thread(|| {
        tcp_client(format!("{}:{port}", netns::PEER_V4).parse().unwrap(), 700).unwrap();
        tcp_client(format!("[{}]:{port}", netns::PEER_V6).parse().unwrap(), 500).unwrap();
        assert_eq!(
            icmp_echo(netns::PEER_V4.parse().unwrap(), 0x51, 1, 2).unwrap(),
            2
        );
        assert_eq!(
            icmp_echo(netns::PEER_V6.parse().unwrap(), 0x52, 1, 2).unwrap(),
            2
        );
        udp_send("127.0.0.1:9999".parse().unwrap(), 2, 20).unwrap();
        udp_send("[::1]:9999".parse().unwrap(), 2, 20).unwrap();
    });
    server.join().unwrap().unwrap();
    server6.join().unwrap().unwrap();
    ns.run_in_peer(|| {
        udp_send(format!("{}:9999", netns::MAIN_V4).parse().unwrap(), 2, 10).unwrap();
        udp_send(format!("[{}]:9999", netns::MAIN_V6).parse().unwrap(), 2, 10).unwrap();
        // To a port nothing listens on: an ICMP port unreachable comes back.
        udp_send(format!("{}:9997", netns::MAIN_V4).parse().unwrap(), 1, 10).unwrap();
        assert_eq!(
            icmp_echo(netns::MAIN_V4.parse().unwrap(), 0x53, 7, 1).unwrap(),
            1
        );
    });
}

/// HWHDR after the usual filters: its keys (and the raw.type / oob.protocol
/// it rewrites) in JSON, for packets with and without a hardware header.
#[test]
fn hwhdr_over_veth() {
    lab::skip_unless_root!();
    let ns = Netns::with_peer("fhw").unwrap();
    let pair = Pair::start(
        &ns,
        "fhw",
        10,
        "base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,hw1:HWHDR",
        "",
    );
    // Rules only once both daemons listen: a packet logged before
    // that (an MLD report from a fresh veth) would reach only one.
    ns.nft(&in_out_rules(10, "")).unwrap();
    veth_traffic(&ns, 5101);
    let (u, r, dir) = pair.stop(&ns);
    compare(&u, &r, &dir);
    // Packets from the peer: the Ethernet header split into its parts.
    let from_peer: Vec<&Record> = r
        .iter()
        .filter(|x| x.str("oob.in") == Some(netns::VETH_MAIN))
        .collect();
    assert!(
        from_peer.len() > 10,
        "{} records from the peer",
        from_peer.len()
    );
    for x in &from_peer {
        let mac = x.req_str("mac.str");
        assert_eq!(mac.len(), 41, "{}", x.line);
        assert_eq!(&mac[..17], x.req_str("mac.daddr.str"), "{}", x.line);
        assert_eq!(&mac[18..35], x.req_str("mac.saddr.str"), "{}", x.line);
        assert_eq!(x.u64("raw.type"), Some(1), "{}", x.line);
    }
    // Output and loopback packets have no hardware header.
    assert!(r
        .iter()
        .filter(|x| x.str("oob.prefix") == Some("OUT"))
        .all(|x| !x.has("mac.str")));
}

/// The extra fields PRINTPKT prints after `TYPE=n CODE=n ` of an ICMP line,
/// and the line without them. ulogd chooses those fields by the code where
/// rulogd uses the type, so they are compared separately (see the PRINTPKT
/// section of docs/COMPATIBILITY.md).
fn split_icmp_extras(line: &str) -> Option<(String, String)> {
    let at = line.find("PROTO=ICMP TYPE=")?;
    let code = at + line[at..].find(" CODE=")? + 6;
    let start = code + line[code..].find(' ')? + 1;
    let end = ["UID=", "GID=", "MARK=", "\n"]
        .iter()
        .filter_map(|m| line[start..].find(m))
        .min()
        .map_or(line.len(), |n| start + n);
    Some((
        format!("{}{}", &line[..start], &line[end..]),
        line[start..end].to_string(),
    ))
}

/// Replaces `print` in ICMP error records (types other than echo) by the
/// line without its extra fields, and returns those fields per record.
fn strip_icmp_extras(recs: &mut [Record]) -> Vec<(u64, u64, String)> {
    let mut extras = Vec::new();
    for rec in recs.iter_mut() {
        let (Some(ty), Some(code)) = (rec.u64("icmp.type"), rec.u64("icmp.code")) else {
            continue;
        };
        if ty == 0 || ty == 8 {
            continue;
        }
        let Some((short, extra)) = rec.str("print").and_then(split_icmp_extras) else {
            continue;
        };
        for (k, v) in rec.fields.iter_mut() {
            if k == "print" {
                *v = serde_json::Value::String(short.clone());
            }
        }
        extras.push((ty, code, extra));
    }
    extras
}

/// Sends one ICMP message of `ty`/`code` with the 4 bytes `rest` from the
/// calling thread's namespace to `dst`, quoting an IPv4/UDP header to
/// 10.201.0.99 as an ICMP error does.
fn send_icmp(dst: Ipv4Addr, ty: u8, code: u8, rest: [u8; 4]) {
    let mut msg = vec![ty, code, 0, 0];
    msg.extend_from_slice(&rest);
    msg.extend_from_slice(&[0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0]);
    msg.extend_from_slice(&dst.octets());
    msg.extend_from_slice(&[10, 201, 0, 99, 0x30, 0x39, 0x30, 0x3a, 0, 8, 0, 0]);
    let mut sum: u32 = msg
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    msg[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    // SAFETY: plain socket calls; buffers and address live across them.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        );
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes(dst.octets());
        let n = libc::sendto(
            fd,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(n, msg.len() as isize, "sendto: {err}");
    }
}

/// PRINTPKT's line, compared in JSON: TCP, UDP, ICMP, IPv4, IPv6, with and
/// without MAC, and ICMP errors whose extra fields depend on the type.
#[test]
fn printpkt_over_veth() {
    lab::skip_unless_root!();
    let ns = Netns::with_peer("fpp").unwrap();
    // ICMP errors from the peer get their own prefix and stop there.
    let pre = twice(
        "icmp type != { echo-request, echo-reply } log prefix \"ICMPERR\" group {G}",
        20,
    ) + "  icmp type != { echo-request, echo-reply } accept\n";
    let pair = Pair::start(
        &ns,
        "fpp",
        20,
        "base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,pp1:PRINTPKT",
        "",
    );
    // Rules only once both daemons listen: a packet logged before
    // that (an MLD report from a fresh veth) would reach only one.
    ns.nft(&in_out_rules(20, &pre)).unwrap();
    veth_traffic(&ns, 5102);
    let main: Ipv4Addr = netns::MAIN_V4.parse().unwrap();
    // (type, code, rest of header): net unreachable, fragmentation needed
    // (MTU 1400), host redirect (gateway 10.201.0.254), parameter problem
    // (pointer 20), time exceeded.
    let errors = [
        (3, 0, [0, 0, 0, 0]),
        (3, 4, [0, 0, 0x05, 0x78]),
        (5, 1, [10, 201, 0, 254]),
        (12, 0, [20, 0, 0, 0]),
        (11, 0, [0, 0, 0, 0]),
    ];
    ns.run_in_peer(|| {
        for (ty, code, rest) in errors {
            send_icmp(main, ty, code, rest);
        }
    });
    let (mut u, mut r, dir) = pair.stop(&ns);
    for x in u.iter().chain(&r) {
        let p = x.req_str("print");
        assert!(p.ends_with(" \n") || p.ends_with("INCOMPLETE\n"), "{p:?}");
    }
    let u_extra = strip_icmp_extras(&mut u);
    let r_extra = strip_icmp_extras(&mut r);
    compare(&u, &r, &dir);
    // The lines themselves, for the record (`--nocapture` shows them).
    for x in r
        .iter()
        .take(3)
        .chain(r.iter().filter(|x| x.has("mac.str")).take(1))
    {
        eprint!("rulogd print: {}", x.req_str("print"));
    }
    let sample = |pfx: &str, want: &str| {
        r.iter()
            .filter(|x| x.str("oob.prefix") == Some(pfx))
            .map(|x| x.req_str("print"))
            .find(|p| p.contains(want))
            .unwrap_or_else(|| panic!("no {pfx} line with {want:?}"))
            .to_string()
    };
    for (pfx, want) in [
        ("IN", "MAC="),
        ("IN", "PROTO=TCP"),
        ("IN", "PROTO=ICMPv6 TYPE=129"),
        ("IN", "PROTO=ICMP TYPE=0 CODE=0 ID=81 SEQ=1 "),
        ("OUT", "PROTO=UDP"),
        ("OUT", "TYPE=3 CODE=3 "),
    ] {
        eprint!("rulogd {pfx}: {}", sample(pfx, want));
    }
    // The ICMP type/code fix shows as a difference in those fields.
    let pick = |v: &[(u64, u64, String)], t: u64, c: u64| -> String {
        let hits: Vec<&String> = v
            .iter()
            .filter(|e| e.0 == t && e.1 == c)
            .map(|e| &e.2)
            .collect();
        assert_eq!(hits.len(), 1, "one ICMP {t}/{c} record expected: {v:?}");
        hits[0].clone()
    };
    for (t, c, _) in errors {
        eprintln!(
            "ICMP {t}/{c}: ulogd2 {:?}, rulogd {:?}",
            pick(&u_extra, t.into(), c.into()),
            pick(&r_extra, t.into(), c.into())
        );
    }
    if daemon::oracle_mode() {
        return;
    }
    assert_eq!(pick(&r_extra, 3, 0), "");
    assert_eq!(pick(&r_extra, 3, 3), "");
    assert_eq!(pick(&r_extra, 3, 4), "MTU=1400 ");
    assert_eq!(pick(&r_extra, 5, 1), "GATEWAY=10.201.0.254 ");
    assert_eq!(pick(&r_extra, 12, 0), "PARAMETER=20 ");
    assert_eq!(pick(&r_extra, 11, 0), "");
    // ulogd2 switches on the code: code 0 reads as an echo reply, code 4 as
    // a source quench (nothing), code 1 as nothing.
    assert!(pick(&u_extra, 3, 0).starts_with("ID="), "{u_extra:?}");
    assert!(pick(&u_extra, 12, 0).starts_with("ID="), "{u_extra:?}");
    assert_eq!(pick(&u_extra, 3, 4), "");
    assert_eq!(pick(&u_extra, 5, 1), "");
}

/// MARK with mark=1: only the packets an nft rule marked reach JSON.
#[test]
fn mark_passes_only_marked_packets() {
    lab::skip_unless_root!();
    let ns = Netns::new("fmark").unwrap();
    let pair = Pair::start(
        &ns,
        "fmark",
        30,
        "base1:BASE,mark1:MARK,ifi1:IFINDEX,ip2str1:IP2STR",
        "\n[mark1]\nmark=1\nmask=0xff\n",
    );
    // Rules only once both daemons listen: a packet logged before
    // that (an MLD report from a fresh veth) would reach only one.
    ns.nft(&format!(
        "table inet t {{\n chain out {{\n  type filter hook output priority 0;\n\
         \x20 udp dport 7001 meta mark set 1\n  tcp dport 7003 meta mark set 0x101\n{}{} }}\n}}\n",
        twice("udp dport 7000-7002 log prefix \"UDP\" group {G}", 30),
        twice("tcp dport 7003 log prefix \"TCP\" group {G}", 30),
    ))
    .unwrap();
    ns.run_in_thread(|| {
        for port in [7000, 7001, 7002] {
            udp_send(format!("127.0.0.1:{port}").parse().unwrap(), 3, 8).unwrap();
            udp_send(format!("[::1]:{port}").parse().unwrap(), 3, 8).unwrap();
        }
        let server = tcp_serve_once(tcp_listen("127.0.0.1:7003".parse().unwrap()).unwrap(), 10);
        tcp_client("127.0.0.1:7003".parse().unwrap(), 10).unwrap();
        server.join().unwrap().unwrap();
    });
    let (u, r, dir) = pair.stop(&ns);
    compare(&u, &r, &dir);
    let udp: Vec<&Record> = r
        .iter()
        .filter(|x| x.str("oob.prefix") == Some("UDP"))
        .collect();
    assert_eq!(udp.len(), 6, "3 v4 + 3 v6 marked datagrams");
    assert!(udp.iter().all(|x| x.u64("dest_port") == Some(7001)));
    // 0x101 & 0xff == 1: the whole TCP session to 7003 passes.
    assert!(r
        .iter()
        .filter(|x| x.str("oob.prefix") == Some("TCP"))
        .all(|x| x.u64("oob.mark") == Some(0x101)));
    assert!(r.iter().any(|x| x.u64("dest_port") == Some(7003)));
}

/// Logs in to an "FTP server" at `addr`: two lines, sent separately.
fn ftp_login(addr: SocketAddr) {
    let server = tcp_serve_once(tcp_listen(addr).unwrap(), 5);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"USER bob\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"PASS secret\r\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut rest).unwrap();
    server.join().unwrap().unwrap();
}

/// PWSNIFF over a real FTP login: rulogd sets the keys on the packets that
/// carry them and passes every record. ulogd2 2.0.8 stops every record in
/// PWSNIFF (docs/COMPATIBILITY.md), so there is nothing to compare; its
/// empty file is checked as the reason.
#[test]
fn pwsniff_ftp_login() {
    lab::skip_unless_root!();
    if daemon::oracle_mode() {
        eprintln!("skipped: ulogd2's PWSNIFF stops every record");
        return;
    }
    let ns = Netns::new("fpw").unwrap();
    let pair = Pair::start(
        &ns,
        "fpw",
        40,
        "base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,pw1:PWSNIFF",
        "",
    );
    // Rules only once both daemons listen: a packet logged before
    // that (an MLD report from a fresh veth) would reach only one.
    ns.nft(&format!(
        "table inet t {{\n chain in {{\n  type filter hook input priority 0;\n{} }}\n}}\n",
        twice("tcp dport 21 log prefix \"FTP\" group {G}", 40),
    ))
    .unwrap();
    ns.run_in_thread(|| {
        ftp_login("127.0.0.1:21".parse().unwrap());
        ftp_login("[::1]:21".parse().unwrap());
    });
    let (u, r, _dir) = pair.stop(&ns);
    assert!(
        u.is_empty(),
        "ulogd2 2.0.8's PWSNIFF passed a record: {}",
        u[0].line
    );
    // SYN, ACK, two data segments, FIN, ACK per login at least: all there.
    assert!(r.len() >= 12, "only {} records", r.len());
    assert!(r.iter().any(|x| x.u64("tcp.syn") == Some(1)));
    let users: Vec<&Record> = r.iter().filter(|x| x.has("pwsniff.user")).collect();
    let passes: Vec<&Record> = r.iter().filter(|x| x.has("pwsniff.pass")).collect();
    assert_eq!(users.len(), 1, "USER is sniffed over IPv4 only");
    assert_eq!(passes.len(), 1);
    assert_eq!(users[0].str("pwsniff.user"), Some("bob"));
    assert_eq!(passes[0].str("pwsniff.pass"), Some("secret"));
    assert_eq!(users[0].str("src_ip"), Some("127.0.0.1"));
    assert!(!users[0].has("pwsniff.pass"), "{}", users[0].line);
}

#[test]
fn icmp_extras_are_split_off() {
    let l = "X MAC= SRC=1.2.3.4 DST=5.6.7.8 LEN=56 TOS=00 PREC=0x00 TTL=64 ID=0 PROTO=ICMP \
             TYPE=3 CODE=4 MTU=1400 MARK=0x0 \n";
    let (short, extra) = split_icmp_extras(l).unwrap();
    assert_eq!(extra, "MTU=1400 ");
    assert!(short.ends_with("TYPE=3 CODE=4 MARK=0x0 \n"));
    let (short, extra) = split_icmp_extras("PROTO=ICMP TYPE=3 CODE=0 ID=5 SEQ=6 UID=0 \n").unwrap();
    assert_eq!(
        (short.as_str(), extra.as_str()),
        ("PROTO=ICMP TYPE=3 CODE=0 UID=0 \n", "ID=5 SEQ=6 ")
    );
    assert!(split_icmp_extras("PROTO=UDP SPT=1").is_none());
}
