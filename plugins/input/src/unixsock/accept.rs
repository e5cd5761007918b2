//! Taking connections in, and the client limit.
//!
//! A short-lived client (connect, one message, close) is often finished
//! before its connection is accepted: its message and end of stream already
//! wait in the socket. Each new connection is therefore read at once, so
//! such a client is served and gone before the next accept, and never holds
//! a place against the limit. When [`MAX_CLIENTS`] are connected all the
//! same, the listener leaves the epoll set: further connections wait in the
//! kernel's listen backlog (and their senders block) instead of being
//! accepted and closed, which lost what they had sent. It comes back as soon
//! as a client leaves.

use super::{cvt, epoll_add, listen, Client, Served, UnixsockInput, LISTENER, MAX_CLIENTS};
use rulogd_plugin::Emitter;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// At most one log line per this interval about the client limit.
pub const LIMIT_NOTICE_EVERY: Duration = Duration::from_secs(10);

/// Reads from a new client before going on with the next accept, so that one
/// streaming without pause cannot hold the accept loop.
const READS_AT_ACCEPT: usize = 8;

impl UnixsockInput {
    /// Accepts pending connections until none is left or the limit is hit.
    pub(super) fn accept_all(&mut self, em: &mut dyn Emitter) {
        loop {
            if self.connected >= MAX_CLIENTS {
                self.pause();
                return;
            }
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of fds, most likely: the listener stays readable and
                    // is retried on the next wakeup; say so once.
                    if !self.accept_warned {
                        self.accept_warned = true;
                        log::warn!("{} (UNIXSOCK): cannot accept a client: {e}", self.name);
                    }
                    return;
                }
            };
            self.accept_warned = false;
            self.add_client(stream, em);
        }
    }

    fn add_client(&mut self, stream: UnixStream, em: &mut dyn Emitter) {
        let peer = listen::peer(stream.as_raw_fd());
        let id = self.next_id;
        self.next_id += 1;
        self.stats.clients.inc();
        if let Err(e) = stream.set_nonblocking(true) {
            self.stats.rejected.inc();
            log::warn!("{} (UNIXSOCK): client #{id}: {e}", self.name);
            return;
        }
        let slot = match self.clients.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.clients.push(None);
                self.clients.len() - 1
            }
        };
        if let Err(e) = epoll_add(self.epoll.as_raw_fd(), stream.as_raw_fd(), slot as u64) {
            self.stats.rejected.inc();
            log::warn!("{} (UNIXSOCK): client #{id}: epoll_ctl: {e}", self.name);
            return;
        }
        let c = Client::new(stream, id, peer, self.bufsize);
        log::info!("{} (UNIXSOCK): {c} connected", self.name);
        self.clients[slot] = Some(c);
        self.connected += 1;
        self.stats.connected.set(self.connected as u64);
        for _ in 0..READS_AT_ACCEPT {
            if self.serve(slot, em) != Served::Data {
                break;
            }
        }
    }

    fn set_listener_events(&self, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events,
            u64: LISTENER,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        cvt(unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_MOD,
                self.listener.as_raw_fd(),
                &mut ev,
            )
        })
        .map(|_| ())
    }

    /// Stops watching the listener; logs the limit at most once per
    /// [`LIMIT_NOTICE_EVERY`], with how often it was hit meanwhile.
    fn pause(&mut self) {
        if self.paused {
            return;
        }
        if let Err(e) = self.set_listener_events(0) {
            // Left watched: the next wakeup tries again, which spins but
            // loses nothing.
            log::warn!("{} (UNIXSOCK): cannot pause the listener: {e}", self.name);
            return;
        }
        self.paused = true;
        self.stats.paused.inc();
        self.pauses_unlogged += 1;
        let now = Instant::now();
        if self
            .last_limit_notice
            .is_none_or(|t| now.duration_since(t) >= LIMIT_NOTICE_EVERY)
        {
            log::warn!(
                "{} (UNIXSOCK): {MAX_CLIENTS} clients connected; new connections wait in the listen backlog until one leaves (limit reached {} times since the last notice)",
                self.name,
                self.pauses_unlogged
            );
            self.pauses_unlogged = 0;
            self.last_limit_notice = Some(now);
        }
    }

    /// Watches the listener again.
    pub(super) fn resume(&mut self) {
        match self.set_listener_events(libc::EPOLLIN as u32) {
            Ok(()) => self.paused = false,
            Err(e) => log::warn!("{} (UNIXSOCK): cannot resume the listener: {e}", self.name),
        }
    }
}
