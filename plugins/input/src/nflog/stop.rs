//! Stopping an NFLOG input without losing the kernel's pending batch.
//!
//! With `netlink_qthreshold`/`netlink_qtimeout` the kernel holds logged
//! packets in a per-group batch until it is full or the timeout fires;
//! closing the socket then throws the batch away. Unbinding the group
//! destroys its kernel instance, which sends the batch first, and the
//! acknowledgement of the unbind follows it on the same socket: reading up
//! to that acknowledgement gets every packet. After `-u` the daemon has no
//! CAP_NET_ADMIN and nfnetlink refuses the unbind (EPERM); then the only way
//! to get the batch is to wait for the kernel's flush timeout. How many
//! packets the batch holds is in `/proc/net/netfilter/nfnetlink_log` (root
//! only, so it is opened before the drop and re-read through that fd): the
//! wait ends as soon as the batch is empty, at once when nothing is pending.

use super::NflogInput;
use rulogd_netlink::nflog::{cfg, config_request, Config};
use rulogd_plugin::{Emitter, Input, ReadStatus};
use std::io::{Read, Seek};
use std::time::{Duration, Instant};

/// The kernel's NFLOG instances of the calling thread's network namespace
/// (`/proc/net` follows the main thread's).
pub const PROC_NFLOG: &str = "/proc/thread-self/net/netfilter/nfnetlink_log";

/// How often the batch length is looked at while waiting for the flush.
const QLEN_POLL: Duration = Duration::from_millis(10);

/// The packets batched for `group` in a `nfnetlink_log` listing (columns:
/// group, port id, batch length, ...), if the group is listed.
pub fn batched(listing: &str, group: u16) -> Option<u32> {
    listing.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        if f.next()?.parse::<u16>().ok()? != group {
            return None;
        }
        f.nth(1)?.parse().ok()
    })
}

/// How long the kernel may take to answer the unbind.
const ACK_WAIT: Duration = Duration::from_secs(2);

/// Longest wait for the kernel's own flush when the unbind is refused: a
/// longer `netlink_qtimeout` would hold a stopping daemon past what service
/// managers allow, so its batch is given up.
pub const MAX_FLUSH_WAIT: Duration = Duration::from_secs(10);

/// Slack after the flush timeout, for the timer and the read.
const FLUSH_SLACK: Duration = Duration::from_millis(100);

/// The kernel's default flush timeout, in 1/100 s.
const KERNEL_DEFAULT_QTIMEOUT: u32 = 100;

/// How long the kernel holds a partial batch with `qtimeout` (1/100 s, 0 =
/// the kernel default), capped at [`MAX_FLUSH_WAIT`].
pub fn flush_wait(qtimeout: u32) -> Duration {
    let t = if qtimeout == 0 {
        KERNEL_DEFAULT_QTIMEOUT
    } else {
        qtimeout
    };
    (Duration::from_millis(u64::from(t) * 10) + FLUSH_SLACK).min(MAX_FLUSH_WAIT)
}

impl NflogInput {
    /// Reads until the socket is empty; false on a read error.
    fn drain(&mut self, em: &mut dyn Emitter) -> bool {
        loop {
            match self.read(em) {
                Ok(ReadStatus::Idle | ReadStatus::Finished) => return true,
                Ok(ReadStatus::More) => {}
                Err(e) => {
                    log::error!("{} (NFLOG): read error while stopping: {e}", self.name);
                    return false;
                }
            }
        }
    }

    /// Waits up to `left` for the socket to become readable.
    fn wait_readable(&self, left: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.sock.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }

    /// Packets the kernel batches for the group, if that can be known.
    fn kernel_qlen(&mut self) -> Option<u32> {
        let f = self.proc_nflog.as_mut()?;
        let mut text = String::new();
        f.rewind().ok()?;
        f.read_to_string(&mut text).ok()?;
        // Not listed: no instance, so nothing batched.
        Some(batched(&text, self.group).unwrap_or(0))
    }

    /// Unbinds the group and reads everything the kernel still had for it.
    pub(super) fn stop_and_drain(&mut self, em: &mut dyn Emitter) {
        let start = Instant::now();
        let g = self.group;
        let seq = self.sock.next_seq();
        let mut msg = Vec::with_capacity(32);
        config_request(
            &mut msg,
            seq,
            libc::AF_UNSPEC as u8,
            g,
            Config::Cmd(cfg::CMD_UNBIND),
        );
        self.awaiting = Some(seq);
        self.ack = None;
        let mut deadline = start + ACK_WAIT;
        // Waiting for the kernel's flush instead of an acknowledgement.
        let mut flushing = false;
        if let Err(e) = self.sock.send(&msg) {
            deadline = self.refused(start, &e.to_string());
            flushing = true;
        }
        loop {
            if !self.drain(em) {
                break;
            }
            if flushing && self.kernel_qlen() == Some(0) {
                // The batch was sent before its length went to 0.
                self.drain(em);
                break;
            }
            match self.ack.take() {
                Some(0) => {
                    // The batch came before the acknowledgement and has just
                    // been read; the group no longer exists in the kernel.
                    self.stats.stop_unbound.inc();
                    log::debug!("{} (NFLOG): group {g} unbound", self.name);
                    break;
                }
                Some(errno) => {
                    let e = std::io::Error::from_raw_os_error(errno);
                    deadline = self.refused(start, &e.to_string());
                    flushing = true;
                    continue;
                }
                None => {}
            }
            let now = Instant::now();
            if now >= deadline {
                if self.awaiting.is_some() {
                    log::warn!(
                        "{} (NFLOG): no answer to unbinding group {g} within {ACK_WAIT:?}",
                        self.name
                    );
                }
                break;
            }
            let mut left = deadline - now;
            if flushing && self.proc_nflog.is_some() {
                left = left.min(QLEN_POLL);
            }
            self.wait_readable(left);
        }
        self.awaiting = None;
        log::debug!("{} (NFLOG): stopped in {:?}", self.name, start.elapsed());
    }

    /// The unbind failed (after `-u`, EPERM): returns until when to read,
    /// so the kernel's flush timer sends the batch it holds.
    fn refused(&mut self, start: Instant, why: &str) -> Instant {
        self.awaiting = None;
        self.stats.stop_waited.inc();
        let wait = flush_wait(self.qtimeout);
        log::info!(
            "{} (NFLOG): cannot unbind group {} at stop ({why}); reading until the kernel's pending batch is sent (flush timeout, at most {wait:?})",
            self.name,
            self.group
        );
        start + wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_reads_the_groups_line() {
        let t = "    0   1234     0 2 65535    100  1\n   63   5678     7 2 65535   6000  1\n";
        assert_eq!(batched(t, 63), Some(7));
        assert_eq!(batched(t, 0), Some(0));
        assert_eq!(batched(t, 5), None);
        assert_eq!(batched("garbage\n", 5), None);
    }

    #[test]
    fn flush_wait_follows_qtimeout_with_a_cap() {
        assert_eq!(flush_wait(0), Duration::from_millis(1100));
        assert_eq!(flush_wait(30), Duration::from_millis(400));
        assert_eq!(flush_wait(100_000), MAX_FLUSH_WAIT);
    }
}
