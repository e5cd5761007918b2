//! A netlink socket over libc: open, request with acknowledgement, receive
//! without blocking, and receive-buffer sizing.

use super::nflog::{messages, Message};
use bytes::{Bytes, BytesMut};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// What one [`NlSocket::recv_chunk`] found.
#[derive(Debug)]
pub enum Recv {
    /// A datagram.
    Chunk {
        /// Its bytes, split off the receive buffer.
        chunk: Bytes,
        /// It was longer than the buffer allowed; its tail is lost.
        truncated: bool,
    },
    /// Nothing queued (`EAGAIN`).
    Empty,
    /// A signal interrupted the call (`EINTR`).
    Interrupted,
    /// The kernel dropped messages for want of buffer space (`ENOBUFS`).
    Overrun,
}

/// How long a configuration request may wait for the kernel's answer.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A netlink socket bound to a kernel-assigned port id.
#[derive(Debug)]
pub struct NlSocket {
    fd: OwnedFd,
    seq: u32,
}

/// What a receive returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes written into the buffer.
    pub len: usize,
    /// The datagram was longer than the buffer; its tail was lost.
    pub truncated: bool,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl NlSocket {
    /// Opens a non-blocking, close-on-exec socket of `protocol` and binds it.
    pub fn open(protocol: libc::c_int) -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                protocol,
            )
        })?;
        // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `sa` is a valid sockaddr_nl and its size is passed along.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        Ok(NlSocket::from_fd(fd))
    }

    /// Wraps an already open datagram socket (tests feed a socketpair).
    pub fn from_fd(fd: OwnedFd) -> Self {
        NlSocket { fd, seq: 0 }
    }

    /// The raw fd, for the core's poll loop.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The next request sequence number.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends one datagram to the kernel.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain data; all-zero addresses the kernel (pid 0).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: `msg` and `sa` are valid for the lengths given.
            let r = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    0,
                    &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one datagram into `buf` without blocking.
    ///
    /// `MSG_TRUNC` makes the kernel report the datagram's real length, which
    /// is how a too-small buffer is noticed instead of parsed as garbage.
    pub fn recv(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<Received> {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let r = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = r as usize;
        Ok(Received {
            len: n.min(buf.len()),
            truncated: n > buf.len(),
        })
    }

    /// Receives one datagram of at most `max` bytes into the spare capacity
    /// of `buf` (first reserved, and empty before) and splits it off as a
    /// chunk that records can share. The errors a read loop goes on after
    /// come back as [`Recv`] variants, the others as `Err`.
    pub fn recv_chunk(&self, buf: &mut BytesMut, max: usize) -> io::Result<Recv> {
        // Reclaims the previous chunk's memory once nothing else holds it.
        buf.reserve(max);
        let spare = buf.spare_capacity_mut();
        let n = spare.len().min(max);
        let r = match self.recv(&mut spare[..n]) {
            Ok(r) => r,
            Err(e) => {
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) => Ok(Recv::Empty),
                    Some(libc::EINTR) => Ok(Recv::Interrupted),
                    Some(libc::ENOBUFS) => Ok(Recv::Overrun),
                    _ => Err(e),
                }
            }
        };
        // SAFETY: recv initialised the first `r.len` bytes of the spare
        // capacity, and the buffer was empty before.
        unsafe { buf.set_len(r.len) };
        Ok(Recv::Chunk {
            chunk: buf.split().freeze(),
            truncated: r.truncated,
        })
    }

    /// Sends a request built with sequence number `seq` and waits for its
    /// acknowledgement; a kernel error comes back as its errno.
    ///
    /// Other messages arriving meanwhile (packets of a group bound a moment
    /// ago) are discarded: this only runs while the input is being set up.
    pub fn request(&self, msg: &[u8], seq: u32) -> io::Result<()> {
        self.send(msg)?;
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 16384];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from the kernel",
                ));
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                continue;
            }
            let got = match self.recv(&mut buf) {
                Ok(g) => g,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted
                        || e.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            // SAFETY: recv initialised the first `got.len` bytes.
            let bytes: &[u8] =
                unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), got.len) };
            for m in messages(bytes) {
                if let Ok(Message::Error { errno, seq: s }) = m {
                    if s == seq {
                        return if errno == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::from_raw_os_error(errno))
                        };
                    }
                }
            }
        }
    }

    /// Sets the receive buffer, forcing past `rmem_max` when allowed
    /// (SO_RCVBUFFORCE needs CAP_NET_ADMIN, else SO_RCVBUF); returns the
    /// size the kernel reports afterwards (twice the request, for overhead).
    pub fn set_rcvbuf(&self, size: usize) -> io::Result<usize> {
        let v = size.min(i32::MAX as usize) as libc::c_int;
        if self.setsockopt_int(libc::SO_RCVBUFFORCE, v).is_err() {
            self.setsockopt_int(libc::SO_RCVBUF, v)?;
        }
        self.rcvbuf()
    }

    /// The receive buffer size the kernel reports.
    pub fn rcvbuf(&self) -> io::Result<usize> {
        let mut v: libc::c_int = 0;
        let mut l = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `l` are valid for an int-sized option.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&mut v as *mut libc::c_int).cast(),
                &mut l,
            )
        })?;
        Ok(v.max(0) as usize)
    }

    fn setsockopt_int(&self, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
        // SAFETY: `v` is a valid int for the size given.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
        .map(|_| ())
    }
}
