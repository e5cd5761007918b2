//! One connected client: its socket and its stream buffer.

use super::listen::Peer;
use bytes::BytesMut;
use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

/// A client connection and the bytes it sent that are not yet a whole message.
pub(super) struct Client {
    pub stream: UnixStream,
    /// Connection number within this instance, for log lines.
    pub id: u64,
    pub peer: Option<Peer>,
    /// Received bytes; complete messages are split off the front and shared
    /// with the records, a partial message stays.
    pub buf: BytesMut,
    /// A second buffer a partial message is moved to, so the first one can
    /// be reused whole once its records are gone (see [`Client::make_room`]).
    spare: BytesMut,
    /// Bytes of the stream already consumed as complete messages.
    pub offset: u64,
    /// Messages accepted from this client.
    pub messages: u64,
    pub unknown_warned: bool,
}

impl Client {
    pub fn new(stream: UnixStream, id: u64, peer: Option<Peer>, cap: usize) -> Client {
        Client {
            stream,
            id,
            peer,
            buf: BytesMut::with_capacity(cap),
            spare: BytesMut::new(),
            offset: 0,
            messages: 0,
            unknown_warned: false,
        }
    }

    /// Ensures at least `cap - len` bytes of free space after the buffered
    /// partial message, without allocating in the steady state.
    ///
    /// `BytesMut::reserve` reuses an allocation that nothing else shares only
    /// if the kept bytes fit before their current offset; otherwise it
    /// allocates. Moving a partial message into the spare buffer (which is
    /// reclaimed whole) and swapping avoids that, at the cost of the copy
    /// ulogd makes too (its memmove).
    pub fn make_room(&mut self, cap: usize) {
        if self.buf.capacity() >= cap {
            return;
        }
        if !self.buf.is_empty() {
            self.spare.clear();
            self.spare.reserve(cap);
            self.spare.extend_from_slice(&self.buf);
            std::mem::swap(&mut self.buf, &mut self.spare);
            self.spare.clear();
        }
        let len = self.buf.len();
        self.buf.reserve(cap.saturating_sub(len));
    }

    /// Reads what the socket has into the free space; `Ok(0)` is end of stream.
    pub fn recv(&mut self) -> io::Result<usize> {
        let spare = self.buf.spare_capacity_mut();
        // SAFETY: the kernel writes at most `spare.len()` bytes into `spare`.
        let r = unsafe {
            libc::recv(
                self.stream.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = r as usize;
        // SAFETY: recv initialised the first `n` bytes of the spare capacity.
        unsafe { self.buf.set_len(self.buf.len() + n) };
        Ok(n)
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client #{}", self.id)?;
        match self.peer {
            Some(p) => write!(f, " (pid {}, uid {})", p.pid, p.uid),
            None => Ok(()),
        }
    }
}
