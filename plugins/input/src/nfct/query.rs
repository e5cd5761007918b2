//! Requests on NFCT's second socket: table dumps (with or without zeroing
//! the counters) and single-entry lookups. They run to completion on the
//! input thread; the event socket keeps queueing meanwhile.

use bytes::{Bytes, BytesMut};
use rulogd_netlink::conntrack::{dump_request, get_request, messages, Conntrack, Message, Tuple};
use rulogd_netlink::socket::{NlSocket, Recv};
use std::io;
use std::time::{Duration, Instant};

/// How long a dump may go without the kernel sending anything.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Receive buffer of the query socket: the kernel fills dump datagrams up
/// to about 16 KiB (more with large pages); 64 KiB leaves room.
const BUFSIZE: usize = 65536;

/// The query socket and its receive buffer.
pub struct Querier {
    sock: NlSocket,
    buf: BytesMut,
    req: Vec<u8>,
}

impl Querier {
    /// Opens a ctnetlink socket that joins no event group.
    pub fn open() -> io::Result<Querier> {
        Ok(Querier {
            sock: NlSocket::open(libc::NETLINK_NETFILTER)?,
            buf: BytesMut::with_capacity(BUFSIZE),
            req: Vec::with_capacity(128),
        })
    }

    /// Waits until the socket is readable or `deadline` passes.
    fn wait(&self, deadline: Instant) -> io::Result<bool> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let mut pfd = libc::pollfd {
                fd: self.sock.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) };
            if r > 0 {
                return Ok(true);
            }
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }

    /// Receives one datagram; `None` when nothing was there after all.
    fn recv(&mut self) -> io::Result<Option<Bytes>> {
        self.buf.clear();
        match self.sock.recv_chunk(&mut self.buf, BUFSIZE)? {
            Recv::Chunk { chunk, .. } => Ok(Some(chunk)),
            Recv::Empty | Recv::Interrupted => Ok(None),
            Recv::Overrun => Err(io::Error::from_raw_os_error(libc::ENOBUFS)),
        }
    }

    /// Dumps the table (`zero`: and resets every counter, returning the
    /// values before the reset), calling `f` with each entry and the
    /// datagram it came in. Returns the number of entries and of malformed
    /// messages.
    pub fn dump(
        &mut self,
        zero: bool,
        mut f: impl FnMut(&Bytes, &Conntrack),
    ) -> io::Result<(usize, usize)> {
        let seq = self.sock.next_seq();
        self.req.clear();
        dump_request(&mut self.req, seq, zero);
        self.sock.send(&self.req)?;
        let (mut n, mut bad) = (0, 0);
        loop {
            if !self.wait(Instant::now() + IDLE_TIMEOUT)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "conntrack dump: no answer from the kernel",
                ));
            }
            let Some(chunk) = self.recv()? else { continue };
            for m in messages(&chunk) {
                match m {
                    // Late answers to an earlier request that timed out.
                    Ok((_, s)) if s != seq => {}
                    Ok((Message::Entry(ct), _)) => {
                        n += 1;
                        f(&chunk, &ct);
                    }
                    Ok((Message::Done { .. }, _)) => return Ok((n, bad)),
                    Ok((Message::Error { errno, .. }, _)) if errno != 0 => {
                        return Err(io::Error::from_raw_os_error(errno))
                    }
                    Ok(_) => {}
                    Err(_) => bad += 1,
                }
            }
        }
    }

    /// Whether the kernel still has the entry with original tuple `orig`.
    pub fn exists(&mut self, family: u8, orig: &Tuple, zone: u16) -> io::Result<bool> {
        let seq = self.sock.next_seq();
        self.req.clear();
        get_request(&mut self.req, seq, family, orig, zone);
        self.sock.send(&self.req)?;
        let deadline = Instant::now() + IDLE_TIMEOUT;
        let mut found = false;
        loop {
            if !self.wait(deadline)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "conntrack get: no answer from the kernel",
                ));
            }
            let Some(chunk) = self.recv()? else { continue };
            for m in messages(&chunk).flatten() {
                match m {
                    (_, s) if s != seq => {}
                    (Message::Entry(_), _) => found = true,
                    // The acknowledgement ends the answer.
                    (Message::Error { errno: 0, .. }, _) => return Ok(found),
                    (Message::Error { errno, .. }, _) if errno == libc::ENOENT => return Ok(false),
                    (Message::Error { errno, .. }, _) => {
                        return Err(io::Error::from_raw_os_error(errno))
                    }
                    _ => {}
                }
            }
        }
    }
}
