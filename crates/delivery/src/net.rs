//! Socket transports: TCP and unix stream clients, and UDP with one datagram
//! per record.
//!
//! Unlike ulogd, none of them connects at build time: the writer thread
//! connects (and reconnects with backoff), so a stack starts while its peer is
//! still down.

use super::batch::Batch;
use super::stats::DeliveryStats;
use super::transport::{write_records, SendError, Transport};
use std::ffi::CString;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long one connect attempt may take before the next address is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one send may make no progress before the peer counts as stalled:
/// the connection is dropped and the line in flight resent on a new one. It
/// also bounds how long a stalled peer can delay shutdown.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// UDP refusals are logged at most this often: they come one per datagram.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(60);

/// Resolves `host` and `port` (a number or a service name) as ulogd does:
/// `getaddrinfo` with AF_UNSPEC, addresses in the resolver's order.
pub fn resolve(host: &str, port: &str, socktype: libc::c_int) -> io::Result<Vec<SocketAddr>> {
    let invalid = |what| io::Error::new(io::ErrorKind::InvalidInput, what);
    let c_host = CString::new(host).map_err(|_| invalid("host contains NUL"))?;
    let c_port = CString::new(port).map_err(|_| invalid("port contains NUL"))?;
    // SAFETY: zeroed addrinfo is the documented way to build hints.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = socktype;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C strings and hints; `res` is freed below.
    let rc = unsafe { libc::getaddrinfo(c_host.as_ptr(), c_port.as_ptr(), &hints, &mut res) };
    if rc != 0 {
        // SAFETY: gai_strerror returns a static string.
        let msg = unsafe { std::ffi::CStr::from_ptr(libc::gai_strerror(rc)) };
        return Err(io::Error::other(format!(
            "cannot resolve {host}:{port}: {}",
            msg.to_string_lossy()
        )));
    }
    let mut out = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: `p` walks the list getaddrinfo returned.
        let ai = unsafe { &*p };
        if let Some(a) = sockaddr_to_std(ai.ai_addr, ai.ai_family) {
            out.push(a);
        }
        p = ai.ai_next;
    }
    // SAFETY: `res` came from getaddrinfo.
    unsafe { libc::freeaddrinfo(res) };
    if out.is_empty() {
        return Err(io::Error::other(format!(
            "{host}:{port}: no usable address"
        )));
    }
    Ok(out)
}

fn sockaddr_to_std(sa: *const libc::sockaddr, family: libc::c_int) -> Option<SocketAddr> {
    if sa.is_null() {
        return None;
    }
    match family {
        libc::AF_INET => {
            // SAFETY: family says this is a sockaddr_in.
            let s = unsafe { &*(sa as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(s.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: family says this is a sockaddr_in6.
            let s = unsafe { &*(sa as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(s.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(s.sin6_port),
                s.sin6_flowinfo,
                s.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Reads whatever the peer sent without blocking: a collector sends nothing,
/// so end-of-file means it closed its side. Catching that before writing lets
/// a peer that half-closes and reads to the end lose nothing: we stop, close
/// and resend on a new connection.
fn peer_gone(fd: RawFd) -> Option<io::Error> {
    let mut buf = [0u8; 512];
    // Bounded, so a chatty peer cannot keep the writer here.
    for _ in 0..64 {
        // SAFETY: reading into a local buffer of the given length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n == 0 {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "peer closed the connection",
            ));
        }
        if n > 0 {
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return None,
            io::ErrorKind::Interrupted => {}
            _ => return Some(e),
        }
    }
    None
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn fd(&self) -> RawFd {
        match self {
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Unix(s) => s.as_raw_fd(),
        }
    }

    fn stream(&mut self) -> &mut dyn Write {
        match self {
            Conn::Tcp(s) => s,
            Conn::Unix(s) => s,
        }
    }

    fn shutdown(&self) {
        // A write-side shutdown sends FIN after the queued bytes, so a peer
        // that keeps reading gets every complete line before end-of-file.
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Write),
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

enum Target {
    Tcp { host: String, port: String },
    Unix(PathBuf),
}

/// A stream client (TCP or unix SOCK_STREAM) that never tears a line.
pub struct StreamTransport {
    target: Target,
    desc: String,
    conn: Option<Conn>,
    write_timeout: Duration,
}

impl StreamTransport {
    /// A TCP client for `host`:`port` (port may be a service name).
    pub fn tcp(host: &str, port: &str) -> Self {
        StreamTransport {
            desc: format!("tcp {host}:{port}"),
            target: Target::Tcp {
                host: host.to_string(),
                port: port.to_string(),
            },
            conn: None,
            write_timeout: WRITE_TIMEOUT,
        }
    }

    /// A unix stream client for the socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        StreamTransport {
            desc: format!("unix {}", path.display()),
            target: Target::Unix(path),
            conn: None,
            write_timeout: WRITE_TIMEOUT,
        }
    }

    /// Bytes written on the current connection that the peer has not
    /// acknowledged yet (SIOCOUTQ: unsent plus sent-but-unACKed for TCP,
    /// not yet read by the peer for a unix socket). `None` when not connected
    /// or when the kernel cannot tell. Bytes written before that many were
    /// taken by the peer's kernel, which is all a plaintext protocol learns.
    pub fn unacked_bytes(&self) -> Option<usize> {
        let fd = self.conn.as_ref()?.fd();
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int through the pointer.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
        (rc == 0 && n >= 0).then_some(n as usize)
    }

    /// Writes all of `data` on the current connection, for a caller that
    /// replays bytes it keeps itself (GRAPHITE's resend window).
    pub fn write_raw(&mut self, data: &[u8]) -> io::Result<()> {
        let conn = self.conn.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        conn.stream().write_all(data)
    }

    fn connect(&self) -> io::Result<Conn> {
        match &self.target {
            Target::Tcp { host, port } => {
                let mut last = None;
                for addr in resolve(host, port, libc::SOCK_STREAM)? {
                    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                        Ok(s) => {
                            // Batches are already large; do not hold small
                            // idle-time flushes back.
                            s.set_nodelay(true)?;
                            s.set_write_timeout(Some(self.write_timeout))?;
                            return Ok(Conn::Tcp(s));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| io::Error::other("no address")))
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_write_timeout(Some(self.write_timeout))?;
                Ok(Conn::Unix(s))
            }
        }
    }
}

impl Transport for StreamTransport {
    fn describe(&self) -> &str {
        &self.desc
    }

    fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    fn open(&mut self) -> io::Result<()> {
        self.conn = Some(self.connect()?);
        Ok(())
    }

    fn send(&mut self, batch: &Batch, from: usize, _: &DeliveryStats) -> Result<(), SendError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendError {
                next: from,
                error: io::ErrorKind::NotConnected.into(),
            });
        };
        if let Some(error) = peer_gone(conn.fd()) {
            return Err(SendError { next: from, error });
        }
        // std sockets write with MSG_NOSIGNAL semantics (SIGPIPE is ignored by
        // the Rust runtime), so a dead peer is an EPIPE error here. A torn tail
        // on the old connection is left to the peer; the whole line is resent.
        write_records(conn.stream(), batch, from).map_err(|(e, _)| e)
    }

    fn close(&mut self) {
        if let Some(c) = self.conn.take() {
            c.shutdown();
        }
    }

    fn limit_send_time(&mut self, limit: Duration) {
        self.write_timeout = limit.max(Duration::from_millis(1));
        if let Some(c) = &self.conn {
            let r = match c {
                Conn::Tcp(s) => s.set_write_timeout(Some(self.write_timeout)),
                Conn::Unix(s) => s.set_write_timeout(Some(self.write_timeout)),
            };
            if let Err(e) = r {
                log::warn!("{}: cannot shorten the send timeout: {e}", self.desc);
            }
        }
    }
}

/// A UDP client sending one datagram per record, as ulogd does.
pub struct UdpTransport {
    host: String,
    port: String,
    desc: String,
    sock: Option<UdpSocket>,
    refused_logged: Option<Instant>,
}

impl UdpTransport {
    /// A UDP client for `host`:`port`.
    pub fn new(host: &str, port: &str) -> Self {
        UdpTransport {
            host: host.to_string(),
            port: port.to_string(),
            desc: format!("udp {host}:{port}"),
            sock: None,
            refused_logged: None,
        }
    }

    fn refused(&mut self, stats: &DeliveryStats) {
        stats.write_errors.inc();
        let now = Instant::now();
        let due = match self.refused_logged {
            None => true,
            Some(t) => now.duration_since(t) >= REFUSED_LOG_EVERY,
        };
        if due {
            log::warn!("{}: peer refuses datagrams (port unreachable)", self.desc);
            self.refused_logged = Some(now);
        }
    }
}

impl Transport for UdpTransport {
    fn describe(&self) -> &str {
        &self.desc
    }

    fn is_open(&self) -> bool {
        self.sock.is_some()
    }

    fn open(&mut self) -> io::Result<()> {
        let mut last = None;
        for addr in resolve(&self.host, &self.port, libc::SOCK_DGRAM)? {
            let local: SocketAddr = if addr.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            match UdpSocket::bind(local).and_then(|s| s.connect(addr).map(|()| s)) {
                Ok(s) => {
                    self.sock = Some(s);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no address")))
    }

    fn send(&mut self, batch: &Batch, from: usize, stats: &DeliveryStats) -> Result<(), SendError> {
        for i in from..batch.records() {
            let mut retried = false;
            loop {
                let Some(sock) = self.sock.as_ref() else {
                    return Err(SendError {
                        next: i,
                        error: io::ErrorKind::NotConnected.into(),
                    });
                };
                match sock.send(batch.record(i)) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // The ICMP error belongs to an earlier datagram; this one
                    // was not sent, so try it once more.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && !retried => {
                        self.refused(stats);
                        retried = true;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                        // Retrying can never succeed: skip this one record.
                        stats.write_errors.inc();
                        log::warn!(
                            "{}: record of {} bytes is too large for a datagram, skipped",
                            self.desc,
                            batch.record(i).len()
                        );
                        break;
                    }
                    Err(error) => return Err(SendError { next: i, error }),
                }
            }
        }
        Ok(())
    }

    fn close(&mut self) {
        self.sock = None;
    }
}
