//! Kernel state read from /proc: NFLOG instances, netlink sockets, CPU time.
//!
//! These let the lab know, without any help from the daemon, when a daemon
//! has bound its NFLOG group (ready) and when it has read every message the
//! kernel queued for it (drained), and how many messages the kernel dropped.

use crate::Netns;
use std::io;

/// One line of `/proc/net/netfilter/nfnetlink_log` (per namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NflogInstance {
    pub group: u16,
    /// Netlink port id of the socket bound to the group.
    pub portid: u32,
    /// Messages batched in the kernel, not yet sent to the socket (they are
    /// flushed at the queue threshold, when the buffer is full, or by the
    /// flush timer, 1 s by default).
    pub qlen: u32,
    pub copy_mode: u8,
    pub copy_range: u32,
    /// In 1/100 s.
    pub flush_timeout: u32,
}

/// One NETLINK_NETFILTER line of `/proc/net/netlink`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetlinkSock {
    pub portid: u32,
    /// Bytes queued in the receive buffer, not yet read by the process.
    pub rmem: u64,
    /// Messages the kernel could not queue (ENOBUFS, i.e. lost).
    pub drops: u64,
}

const NETLINK_NETFILTER: u32 = 12;

pub fn parse_nflog(text: &str) -> Vec<NflogInstance> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(NflogInstance {
                group: f.first()?.parse().ok()?,
                portid: f.get(1)?.parse().ok()?,
                qlen: f.get(2)?.parse().ok()?,
                copy_mode: f.get(3)?.parse().ok()?,
                copy_range: f.get(4)?.parse().ok()?,
                flush_timeout: f.get(5)?.parse().ok()?,
            })
        })
        .collect()
}

pub fn parse_netlink(text: &str) -> Vec<NetlinkSock> {
    // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(1)?.parse::<u32>().ok()? != NETLINK_NETFILTER {
                return None;
            }
            Some(NetlinkSock {
                portid: f.get(2)?.parse().ok()?,
                rmem: f.get(4)?.parse().ok()?,
                drops: f.get(8)?.parse().ok()?,
            })
        })
        .collect()
}

impl Netns {
    /// The NFLOG instances bound in this namespace.
    pub fn nflog_instances(&self) -> io::Result<Vec<NflogInstance>> {
        Ok(parse_nflog(&self.read_proc_net("netfilter/nfnetlink_log")?))
    }

    /// The netfilter netlink sockets of this namespace.
    pub fn netlink_sockets(&self) -> io::Result<Vec<NetlinkSock>> {
        Ok(parse_netlink(&self.read_proc_net("netlink")?))
    }

    /// The instance bound to `group`, if any.
    pub fn nflog_instance(&self, group: u16) -> Option<NflogInstance> {
        self.nflog_instances()
            .ok()?
            .into_iter()
            .find(|i| i.group == group)
    }

    /// True when `group` is bound, the kernel holds no batched message for it
    /// and its socket's receive queue is empty: the listener has read
    /// everything that was logged so far.
    pub fn nflog_drained(&self, group: u16) -> bool {
        let Some(inst) = self.nflog_instance(group) else {
            return false;
        };
        inst.qlen == 0
            && self
                .netlink_sockets()
                .ok()
                .and_then(|s| s.into_iter().find(|s| s.portid == inst.portid))
                .is_some_and(|s| s.rmem == 0)
    }

    /// Messages the kernel dropped on the socket bound to `group` (0 if none
    /// is bound).
    pub fn nflog_socket_drops(&self, group: u16) -> u64 {
        let Some(inst) = self.nflog_instance(group) else {
            return 0;
        };
        self.netlink_sockets()
            .ok()
            .and_then(|s| s.into_iter().find(|s| s.portid == inst.portid))
            .map_or(0, |s| s.drops)
    }
}

/// utime + stime of a process in clock ticks. `/proc/PID/stat` already sums
/// all threads of the process, including threads that have exited.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; fields after the last
    // ')' are well formed. utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("bad /proc stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| -> io::Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("bad /proc stat field"))
    };
    // rest starts at field 3 (state), so field N is index N - 3.
    Ok(get(11)? + get(12)?)
}

/// Clock ticks per second for [`cpu_ticks`].
pub fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nflog_and_netlink() {
        let i = parse_nflog("    1   8787     3 2 65531    100  2\n");
        assert_eq!(i[0].group, 1);
        assert_eq!(i[0].portid, 8787);
        assert_eq!(i[0].qlen, 3);
        assert_eq!(i[0].flush_timeout, 100);
        let s = parse_netlink(
            "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n\
             00000000be661963 12  8715       00000000 4352     0        0     2        7        14379\n\
             00000000c09cf75a 4   0          00000000 0        0        0     2        0        13043\n",
        );
        assert_eq!(
            s,
            vec![NetlinkSock {
                portid: 8715,
                rmem: 4352,
                drops: 7
            }]
        );
    }
}
