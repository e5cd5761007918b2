//! NFCT options, the accept filters, the conntrack sysctls and the sockets.

use rulogd_netlink::conntrack::{
    NFNLGRP_CONNTRACK_DESTROY, NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE,
};
use rulogd_netlink::socket::NlSocket;
use rulogd_plugin::{BuildError, OptValue, OptionDef, Options};
use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The options: ulogd's, in its order, then rulogd's own.
pub static OPTIONS: [OptionDef; 14] = [
    OptionDef::int("pollinterval", "0", "0: listen to conntrack events; N: dump the table every N seconds and log flows that have gone (needs hash_enable=1)").range(0, u32::MAX as i64).check(polling_needs_hash),
    OptionDef::int("hash_enable", "1", "keep active flows in a table and log each flow once, at its end, with its start time (0: log NEW and DESTROY events as they come)").flag(),
    OptionDef::int("hash_buckets", "8192", "initial size of the flow table, in flows (it grows up to hash_max_entries)").range(1, i32::MAX as i64),
    OptionDef::int("hash_max_entries", "32768", "most flows held in the table; flows beyond it are logged at their end without a start time").range(1, i32::MAX as i64),
    OptionDef::int("event_mask", "5", "conntrack events to subscribe to: 1 NEW, 2 UPDATE, 4 DESTROY (sum)").range(0, u32::MAX as i64),
    OptionDef::int("netlink_socket_buffer_size", "0", "event socket receive buffer in bytes (SO_RCVBUFFORCE, else SO_RCVBUF); 0 keeps the system default").range(0, i32::MAX as i64),
    OptionDef::int("netlink_socket_buffer_maxsize", "0", "on ENOBUFS, double the receive buffer up to this many bytes; 0 never grows it").range(0, i32::MAX as i64),
    OptionDef::int("netlink_resync_timeout", "60", "seconds after lost events (ENOBUFS) before the flow table is checked against the kernel's (hash mode)").range(0, u32::MAX as i64),
    OptionDef::int("reliable", "0", "ask the kernel for reliable event delivery (NETLINK_BROADCAST_SEND_ERROR, NETLINK_NO_ENOBUFS); the kernel may then drop packets rather than events").flag(),
    OptionDef::str("accept_src_filter", "", "only flows whose original source is in one of these networks, e.g. 192.168.1.0/24,fd00::/64 (IPv4 only rejects IPv6 and vice versa)").check(networks),
    OptionDef::str("accept_dst_filter", "", "only flows whose original destination is in one of these networks (same form)").check(networks),
    OptionDef::str("accept_proto_filter", "", "only flows of these layer-4 protocols, by name or number, e.g. tcp,udp").check(protocols),
    OptionDef::int("enable_acct", "0", "rulogd only: 1 sets net.netfilter.nf_conntrack_acct=1 at start, so flows created afterwards carry packet and byte counters").flag(),
    OptionDef::int("enable_timestamp", "0", "rulogd only: 1 sets net.netfilter.nf_conntrack_timestamp=1 at start, so flow times come from the kernel").flag(),
];

/// Polling compares dumps with the flow table, so it needs one.
fn polling_needs_hash(_: &OptValue, o: &Options) -> Result<(), String> {
    if o.int("pollinterval") != 0 && o.int("hash_enable") == 0 {
        return Err("NFCT polling mode requires the hashtable (hash_enable=1)".into());
    }
    Ok(())
}

/// An accept filter parses as the builder will parse it.
fn networks(v: &OptValue, _: &Options) -> Result<(), String> {
    match v {
        OptValue::Str(s) => AddrFilter::parse("", s).map(|_| ()).map_err(|e| e.detail()),
        OptValue::Int(_) => Ok(()),
    }
}

/// The protocol filter parses as the builder will parse it.
fn protocols(v: &OptValue, _: &Options) -> Result<(), String> {
    match v {
        OptValue::Str(s) => parse_protos(s).map(|_| ()).map_err(|e| e.detail()),
        OptValue::Int(_) => Ok(()),
    }
}

/// One network of an accept filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    /// IPv6 (else IPv4 in the first four bytes).
    pub v6: bool,
    /// The address with the host bits cleared.
    pub addr: [u8; 16],
    /// Prefix length.
    pub prefix: u8,
}

impl Net {
    fn contains(&self, a: &[u8; 16]) -> bool {
        let bits = self.prefix as usize;
        let (full, rest) = (bits / 8, bits % 8);
        if a[..full] != self.addr[..full] {
            return false;
        }
        rest == 0 || (a[full] ^ self.addr[full]) & (0xffu8 << (8 - rest)) == 0
    }
}

/// `accept_src_filter` / `accept_dst_filter`: networks of either family.
///
/// As with ulogd's kernel filter, a list that names only IPv4 networks
/// rejects every IPv6 flow, and the other way round; an empty list accepts
/// everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddrFilter {
    nets: Vec<Net>,
}

impl AddrFilter {
    /// Parses `addr/prefix[,addr/prefix…]` (the prefix is required, as in ulogd).
    pub fn parse(option: &str, s: &str) -> Result<AddrFilter, BuildError> {
        let mut nets = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let bad = |why: &str| BuildError::option(option, format!("`{item}`: {why}"));
            let (a, p) = item
                .split_once('/')
                .ok_or_else(|| bad("no network specified (write addr/prefix)"))?;
            let prefix: u8 = p.parse().map_err(|_| bad("bad prefix length"))?;
            let mut addr = [0u8; 16];
            let v6 = a.contains(':');
            if v6 {
                let ip: Ipv6Addr = a.parse().map_err(|_| bad("bad IPv6 address"))?;
                if prefix > 128 {
                    return Err(bad("prefix longer than 128"));
                }
                addr = ip.octets();
            } else {
                let ip: Ipv4Addr = a.parse().map_err(|_| bad("bad IPv4 address"))?;
                if prefix > 32 {
                    return Err(bad("prefix longer than 32"));
                }
                addr[..4].copy_from_slice(&ip.octets());
            }
            let mut n = Net { v6, addr, prefix };
            // Clear host bits so `contains` compares whole bytes.
            let (full, rest) = (prefix as usize / 8, prefix as usize % 8);
            for (i, b) in n.addr.iter_mut().enumerate() {
                if i > full || (i == full && rest == 0) {
                    *b = 0;
                } else if i == full {
                    *b &= 0xffu8 << (8 - rest);
                }
            }
            nets.push(n);
        }
        Ok(AddrFilter { nets })
    }

    /// Whether the filter lets an address of `family` through.
    #[inline]
    pub fn accepts(&self, family: u8, a: &[u8; 16]) -> bool {
        if self.nets.is_empty() {
            return true;
        }
        let v6 = match family as i32 {
            libc::AF_INET => false,
            libc::AF_INET6 => true,
            // ulogd's filter only looks at IPv4 and IPv6 addresses.
            _ => return true,
        };
        self.nets.iter().any(|n| n.v6 == v6 && n.contains(a))
    }

    /// Whether the filter has no networks.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// Parses `accept_proto_filter`: protocol names (`/etc/protocols`, as
/// ulogd's `getprotobyname`) or numbers.
pub fn parse_protos(s: &str) -> Result<Vec<u8>, BuildError> {
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let p = match name.parse::<u8>() {
            Ok(n) => n,
            Err(_) => proto_by_name(name).ok_or_else(|| {
                BuildError::option("accept_proto_filter", format!("unknown protocol `{name}`"))
            })?,
        };
        log::info!("NFCT: adding protocol {name} ({p}) to the accept filter");
        out.push(p);
    }
    Ok(out)
}

fn proto_by_name(name: &str) -> Option<u8> {
    let c = CString::new(name).ok()?;
    // SAFETY: a valid C string; the result points into libc's static
    // storage and is read at once (start-up runs on one thread).
    let p = unsafe { libc::getprotobyname(c.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null protoent from libc.
    let n = unsafe { (*p).p_proto };
    u8::try_from(n).ok()
}

/// Validated options of one NFCT instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Seconds between dumps; 0 = event mode.
    pub pollinterval: u32,
    /// Keep the flow table.
    pub hash: bool,
    /// Initial table capacity.
    pub buckets: usize,
    /// Table limit.
    pub max_entries: usize,
    /// Multicast groups (bit 0 NEW, 1 UPDATE, 2 DESTROY).
    pub event_mask: u32,
    /// Initial socket receive buffer (0 = leave alone).
    pub rcvbuf: usize,
    /// Growth limit for the receive buffer (0 = never grow).
    pub rcvbuf_max: usize,
    /// Seconds from an overrun to the resync.
    pub resync_timeout: u32,
    /// Reliable event delivery.
    pub reliable: bool,
    /// `accept_src_filter`.
    pub src: AddrFilter,
    /// `accept_dst_filter`.
    pub dst: AddrFilter,
    /// `accept_proto_filter`.
    pub protos: Vec<u8>,
    /// Turn `nf_conntrack_acct` on.
    pub enable_acct: bool,
    /// Turn `nf_conntrack_timestamp` on.
    pub enable_timestamp: bool,
}

impl Settings {
    /// Reads and checks the options.
    pub fn from_options(o: &Options) -> Result<Settings, BuildError> {
        let i32max = i32::MAX as i64;
        let pollinterval = o.int_in("pollinterval", 0, u32::MAX as i64)? as u32;
        let hash = o.int("hash_enable") != 0;
        if pollinterval != 0 && !hash {
            return Err(BuildError::option(
                "pollinterval",
                "NFCT polling mode requires the hashtable (hash_enable=1)",
            ));
        }
        let mask = o.int_in("event_mask", 0, u32::MAX as i64)? as u32;
        if mask & !7 != 0 {
            log::warn!(
                "NFCT: event_mask 0x{mask:x} has bits beyond NEW|UPDATE|DESTROY (7); they are ignored"
            );
        }
        let max_entries = o.int_in("hash_max_entries", 1, i32max)? as usize;
        Ok(Settings {
            pollinterval,
            hash,
            buckets: (o.int_in("hash_buckets", 1, i32max)? as usize).min(max_entries),
            max_entries,
            event_mask: mask & 7,
            rcvbuf: o.int_in("netlink_socket_buffer_size", 0, i32max)? as usize,
            rcvbuf_max: o.int_in("netlink_socket_buffer_maxsize", 0, i32max)? as usize,
            resync_timeout: o.int_in("netlink_resync_timeout", 0, u32::MAX as i64)? as u32,
            reliable: o.int("reliable") != 0,
            src: AddrFilter::parse("accept_src_filter", o.str("accept_src_filter"))?,
            dst: AddrFilter::parse("accept_dst_filter", o.str("accept_dst_filter"))?,
            protos: parse_protos(o.str("accept_proto_filter"))?,
            enable_acct: o.int("enable_acct") != 0,
            enable_timestamp: o.int("enable_timestamp") != 0,
        })
    }

    /// Whether any accept filter is set.
    pub fn filtering(&self) -> bool {
        !self.src.is_empty() || !self.dst.is_empty() || !self.protos.is_empty()
    }
}

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const NETLINK_BROADCAST_SEND_ERROR: libc::c_int = 4;
const NETLINK_NO_ENOBUFS: libc::c_int = 5;

fn setsockopt_int(sock: &NlSocket, level: libc::c_int, opt: libc::c_int, v: u32) -> io::Result<()> {
    // SAFETY: `v` is a valid 4-byte value for the size given.
    let r = unsafe {
        libc::setsockopt(
            sock.raw_fd(),
            level,
            opt,
            (&v as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Joins the conntrack event groups of `mask`.
pub fn subscribe(sock: &NlSocket, mask: u32) -> Result<(), BuildError> {
    for (bit, group) in [
        (1, NFNLGRP_CONNTRACK_NEW),
        (2, NFNLGRP_CONNTRACK_UPDATE),
        (4, NFNLGRP_CONNTRACK_DESTROY),
    ] {
        if mask & bit == 0 {
            continue;
        }
        setsockopt_int(sock, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group).map_err(|e| {
            if e.raw_os_error() == Some(libc::EPERM) {
                BuildError::Other(
                    "NFCT: subscribing to conntrack events: permission denied, need CAP_NET_ADMIN"
                        .into(),
                )
            } else {
                BuildError::io(format!("NFCT: joining conntrack event group {group}"), e)
            }
        })?;
    }
    Ok(())
}

/// Sets reliable delivery on the event socket, as ulogd does.
pub fn set_reliable(sock: &NlSocket) -> Result<(), BuildError> {
    for opt in [NETLINK_BROADCAST_SEND_ERROR, NETLINK_NO_ENOBUFS] {
        setsockopt_int(sock, SOL_NETLINK, opt, 1)
            .map_err(|e| BuildError::io("NFCT: enabling reliable event delivery", e))?;
    }
    log::info!("NFCT reliable logging has been enabled.");
    Ok(())
}

/// Reads a conntrack sysctl of this process's network namespace.
fn sysctl(name: &str) -> Option<u32> {
    let v = std::fs::read_to_string(format!("/proc/sys/net/netfilter/{name}")).ok()?;
    v.trim().parse().ok()
}

/// Says what the conntrack sysctls mean for this instance's keys, and turns
/// them on when asked to.
pub fn check_sysctls(instance: &str, s: &Settings) {
    for (name, opt, enable, off) in [
        (
            "nf_conntrack_acct",
            "enable_acct",
            s.enable_acct,
            "orig.raw.* and reply.raw.* (packets, bytes) will be 0",
        ),
        (
            "nf_conntrack_timestamp",
            "enable_timestamp",
            s.enable_timestamp,
            "flow.start.* and flow.end.* will be the times rulogd received the events, not the kernel's",
        ),
    ] {
        let path = format!("/proc/sys/net/netfilter/{name}");
        match sysctl(name) {
            None => log::info!("{instance} (NFCT): cannot read {path} (conntrack not loaded?)"),
            Some(0) if enable => match std::fs::write(&path, "1") {
                Ok(()) => log::info!(
                    "{instance} (NFCT): set net.netfilter.{name}=1 ({opt}=1); it applies to flows created from now on"
                ),
                Err(e) => {
                    log::warn!("{instance} (NFCT): cannot set net.netfilter.{name}=1: {e}; {off}")
                }
            },
            Some(0) => log::warn!(
                "{instance} (NFCT): net.netfilter.{name} is 0: {off}. Turn it on with `sysctl -w net.netfilter.{name}=1` (per network namespace) or the option {opt}=1"
            ),
            Some(_) => {}
        }
    }
}
