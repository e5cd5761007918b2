//! Why nfnetlink refused a configuration request (a bind, a mode), sorted
//! so that each input can say what to do about it.

use std::io;

/// The sorts of refusal an input explains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The process lacks CAP_NET_ADMIN, which nfnetlink checks on every
    /// configuration request.
    NoCapability,
    /// With the capability, the group or queue belongs to another socket
    /// (EPERM for most requests, EBUSY for a bind).
    Taken,
    /// Anything else.
    Other,
}

/// Sorts the error of a configuration request.
pub fn refusal(e: &io::Error) -> Refusal {
    match e.raw_os_error() {
        Some(libc::EPERM) if !has_net_admin() => Refusal::NoCapability,
        Some(libc::EPERM) | Some(libc::EBUSY) => Refusal::Taken,
        _ => Refusal::Other,
    }
}

/// Whether this process holds CAP_NET_ADMIN (bit 12 of CapEff).
pub fn has_net_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

#[cfg(test)]
mod tests {
    use super::{refusal, Refusal};
    use std::io;

    #[test]
    fn errors_other_than_a_refusal_are_other() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(refusal(&e), Refusal::Other);
        // As root (the tests' user) EBUSY is a group another socket holds.
        if super::has_net_admin() {
            let e = io::Error::from_raw_os_error(libc::EBUSY);
            assert_eq!(refusal(&e), Refusal::Taken);
        }
    }
}
