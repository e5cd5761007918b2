//! systemd's service notifications (`sd_notify(3)`), spoken directly: one
//! datagram per state change on the socket `$NOTIFY_SOCKET` names, so the
//! daemon needs no libsystemd. Without `$NOTIFY_SOCKET` every call is a
//! no-op.
//!
//! READY=1 goes out once every stack is built and every input thread runs
//! (so its socket is bound and a packet logged right after is read),
//! STOPPING=1 at a terminal signal, RELOADING=1 then READY=1 around SIGHUP,
//! and WATCHDOG=1 every half `$WATCHDOG_USEC` while every input thread keeps
//! turning its loop.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The service manager's notification socket.
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The socket `$NOTIFY_SOCKET` names (a path, or `@name` for Linux's
    /// abstract namespace); `None` when unset or unusable.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        let addr = match bytes.split_first() {
            Some((b'@', name)) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name).ok()?
            }
            Some((b'/', _)) => SocketAddr::from_pathname(&path).ok()?,
            _ => return None,
        };
        let sock = UnixDatagram::unbound().ok()?;
        Some(Notifier { sock, addr })
    }

    /// Sends one notification (`KEY=value` lines).
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.sock
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(|_| ())
    }

    /// `RELOADING=1` with the monotonic time systemd wants beside it.
    pub fn reloading(&self) -> io::Result<()> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes only into `ts`.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"))
    }
}

/// The watchdog period systemd asks for (`$WATCHDOG_USEC`, for this pid
/// when `$WATCHDOG_PID` says so).
pub fn watchdog_period() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog every half `period` as long as every input thread's
/// loop counter (`beats`) has moved since the last ping; a wedged input
/// (its loop turns at least every 100 ms when healthy) stops the pings and
/// lets systemd restart the service.
pub fn start_watchdog(notifier: Arc<Notifier>, period: Duration, beats: Vec<Arc<AtomicU64>>) {
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let mut seen: Vec<u64> = beats.iter().map(|b| b.load(Ordering::Relaxed)).collect();
            loop {
                std::thread::sleep(period / 2);
                let now: Vec<u64> = beats.iter().map(|b| b.load(Ordering::Relaxed)).collect();
                let alive = now.iter().zip(&seen).all(|(n, s)| n != s);
                if alive {
                    let _ = notifier.send("WATCHDOG=1");
                } else {
                    log::error!("an input thread has not turned its loop for {:?}: not pinging the watchdog", period / 2);
                }
                seen = now;
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the watchdog thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("rulogd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            sock: UnixDatagram::unbound().unwrap(),
            addr: SocketAddr::from_pathname(&path).unwrap(),
        };
        n.send("READY=1").unwrap();
        n.reloading().unwrap();
        let mut buf = [0u8; 256];
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1");
        let k = rx.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..k]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        assert!(text[27..].parse::<u64>().is_ok(), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
