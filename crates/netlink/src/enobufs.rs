//! One receive-buffer policy for every netlink input that can overrun
//! (NFLOG, NFQUEUE, NFCT events): count each ENOBUFS, double the buffer up
//! to `netlink_socket_buffer_maxsize` (ulogd's rule), and warn once per
//! episode of loss, in the words each input has always used.

use crate::socket::NlSocket;
use rulogd_plugin::Counter;

/// Which input's warnings to write (ulogd's texts for NFLOG and NFCT
/// differ in small ways, and NFQUEUE says what happened to the packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    /// NFLOG: events lost.
    Nflog,
    /// NFCT: conntrack events lost.
    Nfct,
    /// NFQUEUE: packets accepted unlogged (`fail_open`) or dropped.
    Nfqueue {
        /// Whether the kernel accepts what it cannot queue.
        fail_open: bool,
    },
}

impl Voice {
    fn plugin(self) -> &'static str {
        match self {
            Voice::Nflog => "NFLOG",
            Voice::Nfct => "NFCT",
            Voice::Nfqueue { .. } => "NFQUEUE",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Voice::Nfqueue { fail_open: true } => "accepted without logging",
            _ => "dropped",
        }
    }

    /// Losses with no maximum configured, or losing again at the maximum.
    fn losing(self, name: &str, n: u64, hint: bool) {
        let p = self.plugin();
        match (self, hint) {
            (Voice::Nflog, true) => log::warn!(
                "{name} ({p}): we are losing events (ENOBUFS, {n} so far). Please consider using the clauses `netlink_socket_buffer_size' and `netlink_socket_buffer_maxsize'"
            ),
            (Voice::Nflog, false) => {
                log::warn!("{name} ({p}): we are losing events (ENOBUFS, {n} so far)")
            }
            (Voice::Nfct, true) => log::warn!(
                "{name} ({p}): we are losing events ({n} so far). Please, consider using the clauses `netlink_socket_buffer_size' and `netlink_socket_buffer_maxsize'"
            ),
            (Voice::Nfct, false) => log::warn!("{name} ({p}): we are losing events ({n} so far)"),
            (Voice::Nfqueue { .. }, _) => log::warn!(
                "{name} ({p}): packets {} because the socket was full ({n} times so far); consider `netlink_socket_buffer_size' and `netlink_socket_buffer_maxsize'",
                self.what()
            ),
        }
    }

    fn grew(self, name: &str, new: usize) {
        let p = self.plugin();
        match self {
            Voice::Nfqueue { .. } => log::warn!(
                "{name} ({p}): packets {} (socket full), increasing buffer size to {new}",
                self.what()
            ),
            _ => log::warn!("{name} ({p}): we are losing events, increasing buffer size to {new}"),
        }
    }

    /// The maximum is reached; `false` when this input has no such warning.
    fn at_max(self, name: &str, max: usize) -> bool {
        let p = self.plugin();
        match self {
            Voice::Nflog => log::warn!(
                "{name} ({p}): maximum buffer size ({max}) has been reached and events are still lost. Please consider raising `netlink_socket_buffer_size' and `netlink_socket_buffer_maxsize'"
            ),
            Voice::Nfct => log::warn!(
                "{name} ({p}): maximum buffer size ({max}) has been reached. Please, consider rising `netlink_socket_buffer_size` and `netlink_socket_buffer_maxsize` clauses."
            ),
            Voice::Nfqueue { .. } => return false,
        }
        true
    }
}

/// The receive buffer of one input's socket and what its overruns did.
#[derive(Debug)]
pub struct RcvbufPolicy {
    voice: Voice,
    /// The size last asked of the kernel (it reports twice that).
    req: usize,
    /// `netlink_socket_buffer_maxsize`; 0: never grow.
    max: usize,
    /// An overrun happened since the last successful read.
    overrun: bool,
    max_warned: bool,
}

impl RcvbufPolicy {
    /// A policy for a socket whose buffer was set to `req` (or, when the
    /// option was 0, half of what the kernel reports), growing up to `max`.
    pub fn new(voice: Voice, req: usize, max: usize) -> Self {
        RcvbufPolicy {
            voice,
            req,
            max,
            overrun: false,
            max_warned: false,
        }
    }

    /// A policy for a socket whose buffer was set to `configured`, or left
    /// alone when that is 0; `reported` is what the kernel reports, twice
    /// the size asked for.
    pub fn for_socket(voice: Voice, configured: usize, reported: usize, max: usize) -> Self {
        let req = if configured != 0 {
            configured
        } else {
            reported / 2
        };
        RcvbufPolicy::new(voice, req, max)
    }

    /// The size last asked of the kernel.
    pub fn requested(&self) -> usize {
        self.req
    }

    /// Whether the warning that the maximum is reached has been given.
    pub fn warned_at_max(&self) -> bool {
        self.max_warned
    }

    /// A read succeeded: the next ENOBUFS starts a new episode of loss.
    #[inline]
    pub fn recovered(&mut self) {
        self.overrun = false;
    }

    /// The kernel could not queue messages to `sock`: counts it in
    /// `enobufs`, grows the buffer when it may (then `rcvbuf` reads the new
    /// size the kernel reports, which is returned) and warns. `sock` is
    /// `None` when the input has no socket to grow right now.
    pub fn on_enobufs(
        &mut self,
        name: &str,
        sock: Option<&NlSocket>,
        enobufs: &Counter,
        rcvbuf: &Counter,
    ) -> Option<usize> {
        enobufs.inc();
        let first = !self.overrun;
        self.overrun = true;
        let n = enobufs.get();
        if self.max == 0 {
            if first {
                self.voice.losing(name, n, true);
            }
            return None;
        }
        let sock = sock?;
        if self.req < self.max {
            let new = self.req.max(1).saturating_mul(2).min(self.max);
            match sock.set_rcvbuf(new) {
                Ok(actual) => {
                    self.req = new;
                    rcvbuf.set(actual as u64);
                    self.voice.grew(name, new);
                    return Some(actual);
                }
                Err(e) => log::warn!(
                    "{name} ({}): cannot grow receive buffer: {e}",
                    self.voice.plugin()
                ),
            }
        } else if !self.max_warned && self.voice.at_max(name, self.max) {
            self.max_warned = true;
        } else if first {
            self.voice
                .losing(name, n, matches!(self.voice, Voice::Nfqueue { .. }));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters() -> (Counter, Counter) {
        (Counter::default(), Counter::default())
    }

    #[test]
    fn without_a_maximum_it_only_counts() {
        let (e, r) = counters();
        let mut p = RcvbufPolicy::new(Voice::Nflog, 1000, 0);
        for _ in 0..3 {
            assert_eq!(p.on_enobufs("x", None, &e, &r), None);
        }
        assert_eq!((e.get(), r.get(), p.requested()), (3, 0, 1000));
    }

    #[test]
    fn starts_from_the_option_else_from_half_the_reported_size() {
        let p = RcvbufPolicy::for_socket(Voice::Nflog, 5000, 425_984, 0);
        assert_eq!(p.requested(), 5000);
        let p = RcvbufPolicy::for_socket(Voice::Nflog, 0, 425_984, 0);
        assert_eq!(p.requested(), 212_992);
    }

    #[test]
    fn doubles_up_to_the_maximum_then_stays() {
        let sock = NlSocket::open(libc::NETLINK_NETFILTER).expect("netlink socket");
        let (e, r) = counters();
        let mut p = RcvbufPolicy::new(Voice::Nfqueue { fail_open: true }, 100_000, 300_000);
        let got = p.on_enobufs("q", Some(&sock), &e, &r).expect("grown");
        assert_eq!(p.requested(), 200_000);
        assert_eq!(r.get(), got as u64);
        assert!(
            got >= 200_000,
            "kernel reports at least what was set: {got}"
        );
        p.recovered();
        assert!(p.on_enobufs("q", Some(&sock), &e, &r).is_some());
        assert_eq!(p.requested(), 300_000, "capped at the maximum");
        assert_eq!(p.on_enobufs("q", Some(&sock), &e, &r), None);
        assert_eq!((e.get(), p.requested()), (3, 300_000));
        // No socket: counted, nothing grown.
        let mut p = RcvbufPolicy::new(Voice::Nfct, 1, 8);
        assert_eq!(p.on_enobufs("c", None, &e, &r), None);
        assert_eq!((e.get(), p.requested()), (4, 1));
    }
}
