//! Traffic generators, all plain Rust sockets. Call them from a thread that is
//! inside a namespace ([`crate::Netns::run_in_thread`]): the sockets they
//! create belong to the namespace of the calling thread.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn unspecified_for(dst: &SocketAddr) -> SocketAddr {
    if dst.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    }
}

/// Sends `count` UDP datagrams of `payload` bytes to `dst` from one socket.
/// Returns the source port, which tests assert on.
pub fn udp_send(dst: SocketAddr, count: usize, payload: usize) -> io::Result<u16> {
    udp_send_paced(dst, count, payload, 0).map(|(port, _)| port)
}

/// Like [`udp_send`] at a steady `rate` packets/s (0 = as fast as possible).
/// Returns the source port and the number of datagrams the kernel accepted.
pub fn udp_send_paced(
    dst: SocketAddr,
    count: usize,
    payload: usize,
    rate: u64,
) -> io::Result<(u16, usize)> {
    paced(dst, count, payload, rate, false)
}

/// [`udp_send_paced`] from a connected socket: its IPv4 datagrams carry IP
/// ids that go up by one (an unconnected socket's DF datagrams carry 0), so
/// `ip.id` with the time tells every packet apart. Nothing may answer at
/// `dst` (drop it): an ICMP error would fail the next send.
pub fn udp_send_paced_connected(
    dst: SocketAddr,
    count: usize,
    payload: usize,
    rate: u64,
) -> io::Result<(u16, usize)> {
    paced(dst, count, payload, rate, true)
}

fn paced(
    dst: SocketAddr,
    count: usize,
    payload: usize,
    rate: u64,
    connect: bool,
) -> io::Result<(u16, usize)> {
    let sock = UdpSocket::bind(unspecified_for(&dst))?;
    if connect {
        sock.connect(dst)?;
    }
    let port = sock.local_addr()?.port();
    let buf: Vec<u8> = (0..payload).map(|i| (i % 251) as u8).collect();
    let start = Instant::now();
    let mut sent = 0;
    for i in 0..count {
        if rate > 0 {
            // Token bucket without drift: packet i is due at i / rate.
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            let now = start.elapsed();
            if due > now + Duration::from_micros(200) {
                std::thread::sleep(due - now);
            }
        }
        if connect {
            sock.send(&buf)?;
        } else {
            sock.send_to(&buf, dst)?;
        }
        sent += 1;
    }
    Ok((port, sent))
}

/// A TCP listener for [`tcp_serve_once`]; create it in the server's namespace.
pub fn tcp_listen(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Serves one connection on its own thread: reads until the client's FIN,
/// answers `reply` bytes, then closes. Returns the bytes received.
pub fn tcp_serve_once(listener: TcpListener, reply: usize) -> JoinHandle<io::Result<usize>> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)?;
        s.write_all(&vec![b'r'; reply])?;
        Ok(got.len())
    })
}

/// What a client saw of a TCP session.
#[derive(Debug, Clone, Copy)]
pub struct TcpOutcome {
    pub client_port: u16,
    pub received: usize,
}

/// Connects to `addr`, sends `bytes`, half-closes (FIN), reads the server's
/// answer until its FIN, then closes. When this returns, every packet of the
/// session has been through the stack: the client's final ACK is sent by the
/// kernel when the server's FIN arrives, before `read` reports EOF.
pub fn tcp_client(addr: SocketAddr, bytes: usize) -> io::Result<TcpOutcome> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let client_port = s.local_addr()?.port();
    s.write_all(&vec![b'q'; bytes])?;
    s.shutdown(Shutdown::Write)?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)?;
    Ok(TcpOutcome {
        client_port,
        received: got.len(),
    })
}

/// A whole session (listener and client) in the current namespace:
/// SYN, SYN-ACK, ACK, data both ways, FIN both ways.
pub fn tcp_session(addr: SocketAddr, bytes: usize, reply: usize) -> io::Result<TcpOutcome> {
    let server = tcp_serve_once(tcp_listen(addr)?, reply);
    let out = tcp_client(addr, bytes)?;
    let served = server
        .join()
        .map_err(|_| io::Error::other("server thread panicked"))??;
    if served != bytes || out.received != reply {
        return Err(io::Error::other(format!(
            "tcp transfer incomplete: server got {served}/{bytes}, client got {}/{reply}",
            out.received
        )));
    }
    Ok(out)
}

fn icmp_checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

struct RawSock(i32);

impl Drop for RawSock {
    fn drop(&mut self) {
        // SAFETY: we own this fd.
        unsafe { libc::close(self.0) };
    }
}

fn sockaddr(ip: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match ip {
        IpAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned
            // for every sockaddr type.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = a.octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Sends `count` ICMP (v4) or ICMPv6 echo requests with identifier `id` and
/// sequence numbers `seq0..seq0+count`, one at a time, each waiting up to 2 s
/// for its reply. Uses raw sockets (we are root), so the identifier is ours
/// and tests can assert `icmp.echoid`. Returns the number of replies seen.
pub fn icmp_echo(dst: IpAddr, id: u16, seq0: u16, count: u16) -> io::Result<usize> {
    let (domain, proto, req_type, rep_type) = match dst {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP, 8u8, 0u8),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8, 129u8),
    };
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let sock = RawSock(fd);
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: valid fd, option value points to a timeval of the right size.
    unsafe {
        libc::setsockopt(
            sock.0,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let (sa, salen) = sockaddr(dst);
    let mut replies = 0;
    for i in 0..count {
        let seq = seq0.wrapping_add(i);
        let mut pkt = vec![req_type, 0, 0, 0];
        pkt.extend_from_slice(&id.to_be_bytes());
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend((0..32u8).map(|b| b.wrapping_add(0x20)));
        if dst.is_ipv4() {
            // The kernel fills the ICMPv6 checksum on raw sockets (it needs
            // the pseudo-header), but not the ICMPv4 one.
            let c = icmp_checksum(&pkt);
            pkt[2..4].copy_from_slice(&c.to_be_bytes());
        }
        // SAFETY: buffer and address are valid for the given lengths.
        let n = unsafe {
            libc::sendto(
                sock.0,
                pkt.as_ptr() as *const libc::c_void,
                pkt.len(),
                0,
                &sa as *const _ as *const libc::sockaddr,
                salen,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            // SAFETY: buf is valid for its length.
            let n =
                unsafe { libc::recv(sock.0, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            let data = &buf[..n as usize];
            // An IPv4 raw socket returns the IP header, an IPv6 one does not.
            let icmp = if dst.is_ipv4() {
                let ihl = usize::from(data[0] & 0x0f) * 4;
                &data[ihl.min(data.len())..]
            } else {
                data
            };
            // A raw socket also sees our own request on loopback: match the
            // reply type, identifier and sequence number.
            if icmp.len() >= 8
                && icmp[0] == rep_type
                && icmp[4..6] == id.to_be_bytes()
                && icmp[6..8] == seq.to_be_bytes()
            {
                replies += 1;
                break;
            }
        }
    }
    Ok(replies)
}

/// UDP both ways: `n` datagrams of `len` bytes, each echoed.
pub fn udp_echo(server: SocketAddr, n: usize, len: usize) {
    let srv = UdpSocket::bind(server).unwrap();
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap();
    let c = UdpSocket::bind(any).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = vec![0u8; 2048];
    for _ in 0..n {
        c.send_to(&vec![7u8; len], server).unwrap();
        let (k, from) = srv.recv_from(&mut buf).unwrap();
        srv.send_to(&buf[..k], from).unwrap();
        c.recv_from(&mut buf).unwrap();
    }
}

/// A little of everything over loopback, each kind to IPv4 then IPv6:
/// `udp` datagrams of 64 bytes to port 9999, a [`tcp_session`] to
/// `tcp_port`, then `pings` [`icmp_echo`]s with id `icmp_id`, all answered.
pub struct Mix {
    /// Datagrams to port 9999 per family.
    pub udp: usize,
    /// The port of the TCP sessions.
    pub tcp_port: u16,
    /// The bytes the client sends and the bytes the server answers.
    pub tcp: (usize, usize),
    /// The ICMP echo identifier.
    pub icmp_id: u16,
    /// Echo requests per family.
    pub pings: u16,
}

impl Mix {
    /// What the SQL and ClickHouse tests send.
    pub const SQL: Mix = Mix {
        udp: 5,
        tcp_port: 5001,
        tcp: (3000, 500),
        icmp_id: 0x42,
        pings: 3,
    };

    /// Sends it from the calling thread's namespace; panics if a part fails.
    pub fn send(&self) {
        for host in ["127.0.0.1", "::1"] {
            let ip: IpAddr = host.parse().expect("literal");
            udp_send(SocketAddr::new(ip, 9999), self.udp, 64).unwrap();
        }
        for host in ["127.0.0.1", "::1"] {
            let ip: IpAddr = host.parse().expect("literal");
            tcp_session(SocketAddr::new(ip, self.tcp_port), self.tcp.0, self.tcp.1).unwrap();
        }
        for host in ["127.0.0.1", "::1"] {
            let ip: IpAddr = host.parse().expect("literal");
            let got = icmp_echo(ip, self.icmp_id, 1, self.pings).unwrap();
            assert_eq!(got, usize::from(self.pings), "echo replies from {ip}");
        }
    }
}

/// The flows of the conntrack tests, one after the other: UDP echoes to
/// `port` (3 of 64 bytes over IPv4, 2 of 100 over IPv6), TCP sessions to
/// `port + 1` (3000 and 500 bytes over IPv4, 1000 and 200 over IPv6), 2
/// pings with id 0x51 over IPv4 and, with `v6_ping`, 3 with id 0x52 over
/// IPv6: six flows, or five.
pub fn conntrack_flows(port: u16, v6_ping: bool) {
    udp_echo(SocketAddr::from(([127, 0, 0, 1], port)), 3, 64);
    udp_echo(format!("[::1]:{port}").parse().unwrap(), 2, 100);
    tcp_session(SocketAddr::from(([127, 0, 0, 1], port + 1)), 3000, 500).unwrap();
    tcp_session(format!("[::1]:{}", port + 1).parse().unwrap(), 1000, 200).unwrap();
    assert_eq!(
        icmp_echo("127.0.0.1".parse().unwrap(), 0x51, 1, 2).unwrap(),
        2
    );
    if v6_ping {
        assert_eq!(icmp_echo("::1".parse().unwrap(), 0x52, 1, 3).unwrap(), 3);
    }
}

/// Traffic over the veth of [`crate::Netns::with_peer`]: a TCP session to
/// a server in the peer on `port` (`tcp.0` bytes sent, `tcp.1` answered), 2
/// pings with id 0x78 to the peer's IPv6 address, then 2 datagrams of 10
/// bytes from the peer to port 9999 of each of this side's addresses.
pub fn over_veth(ns: &crate::Netns, port: u16, tcp: (usize, usize)) {
    use crate::netns::{MAIN_V4, MAIN_V6, PEER_V4, PEER_V6};
    let server: SocketAddr = format!("{PEER_V4}:{port}").parse().unwrap();
    let listener = ns.run_in_peer(|| tcp_listen(server).unwrap());
    let srv = tcp_serve_once(listener, tcp.1);
    ns.run_in_thread(|| {
        tcp_client(server, tcp.0).unwrap();
        assert_eq!(icmp_echo(PEER_V6.parse().unwrap(), 0x78, 1, 2).unwrap(), 2);
    });
    srv.join().unwrap().unwrap();
    ns.run_in_peer(|| {
        udp_send(format!("{MAIN_V4}:9999").parse().unwrap(), 2, 10).unwrap();
        udp_send(format!("[{MAIN_V6}]:9999").parse().unwrap(), 2, 10).unwrap();
    });
}
