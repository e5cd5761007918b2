//! NFLOG options and the kernel side of start-up: binding the group and
//! applying each option, with refusals worded for the operator.

use super::NlSocket;
use rulogd_netlink::nflog::{cfg, config_request, Config};
use rulogd_netlink::refusal::Refusal;
use rulogd_plugin::{BuildError, OptValue, OptionDef, Options};
use std::io;

/// ulogd's copy range: the whole packet (`NFULNL_COPY_PACKET`, 0xffff).
const COPY_RANGE: u32 = 0xffff;

/// Largest batch buffer the kernel accepts for `NFULA_CFG_NLBUFSIZ`.
const NLBUFSIZ_MAX: i64 = 131_072;

/// The options, in ulogd's order, then rulogd's own.
pub static OPTIONS: [OptionDef; 14] = [
    OptionDef::int("bufsize", "150000", "size of the userspace receive buffer in bytes; one netlink datagram must fit").range(64, i32::MAX as i64),
    OptionDef::int("group", "0", "NFLOG group to bind (nft `log group N`, iptables `--nflog-group N`)").range(0, 65535).unique(),
    OptionDef::int("unbind", "1", "before binding a protocol family, force-unbind its current kernel logger").flag(),
    OptionDef::int("bind", "0", "become the kernel logger for AF_INET, AF_INET6 and AF_BRIDGE (always done when group=0)").flag(),
    OptionDef::int("seq_local", "0", "ask for per-group sequence numbers (oob.seq.local); gaps are counted as seq_gaps").flag(),
    OptionDef::int("seq_global", "0", "ask for global sequence numbers (oob.seq.global)").flag(),
    OptionDef::int("numeric_label", "0", "constant exported as raw.label (0-255), e.g. to tell accept and drop stacks apart").range(0, 255),
    OptionDef::int("netlink_socket_buffer_size", "0", "netlink socket receive buffer in bytes (SO_RCVBUFFORCE, else SO_RCVBUF); 0 keeps the system default").range(0, i32::MAX as i64),
    OptionDef::int("netlink_socket_buffer_maxsize", "0", "on ENOBUFS, double the receive buffer up to this many bytes; 0 never grows it").range(0, i32::MAX as i64),
    OptionDef::int("netlink_qthreshold", "0", "packets the kernel batches into one datagram (0 = kernel default, 100)").range(0, u32::MAX as i64),
    OptionDef::int("netlink_qtimeout", "0", "how long the kernel holds a partial batch, in 1/100 s (0 = kernel default, 1 s)").range(0, u32::MAX as i64),
    OptionDef::int("attach_conntrack", "0", "attach the packet's conntrack entry as key `ct` (needs conntrack netlink support)").flag(),
    OptionDef::int("vlan", "0", "rulogd only: give a bridged packet's VLAN id (NFULA_VLAN) as key oob.vlan; off by default, so a ulogd2 config's output (a JSON line) stays ulogd2's").flag(),
    OptionDef::int("netlink_nlbufsiz", "0", "rulogd only: size in bytes of the kernel's per-group batch buffer (NFULA_CFG_NLBUFSIZ, 4096-131072; 0 = kernel default, about one page). A larger buffer lets the kernel pack more packets into one datagram, so fewer recv() calls are needed; must not exceed bufsize").range(4096, NLBUFSIZ_MAX).or_zero().check(nlbufsiz_fits),
];

/// `netlink_nlbufsiz` must fit in `bufsize`, or batched datagrams are cut.
fn nlbufsiz_fits(_: &OptValue, o: &Options) -> Result<(), String> {
    let (n, b) = (o.int("netlink_nlbufsiz"), o.int("bufsize"));
    if n > b {
        return Err(format!(
            "{n} exceeds bufsize {b}: batched datagrams would be cut"
        ));
    }
    Ok(())
}

/// Validated options of one NFLOG instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Userspace receive buffer size.
    pub bufsize: usize,
    /// NFLOG group.
    pub group: u16,
    /// Force-unbind the family's logger before binding.
    pub unbind: bool,
    /// Bind as the families' logger even with a non-zero group.
    pub bind: bool,
    /// Request `NFULA_SEQ`.
    pub seq_local: bool,
    /// Request `NFULA_SEQ_GLOBAL`.
    pub seq_global: bool,
    /// `raw.label`.
    pub label: u8,
    /// Initial socket receive buffer (0 = leave alone).
    pub rcvbuf: usize,
    /// Growth limit for the receive buffer (0 = never grow).
    pub rcvbuf_max: usize,
    /// Kernel queue threshold (0 = kernel default).
    pub qthreshold: u32,
    /// Kernel flush timeout in 1/100 s (0 = kernel default).
    pub qtimeout: u32,
    /// Request `NFULA_CT`.
    pub attach_conntrack: bool,
    /// Kernel batch buffer (0 = kernel default).
    pub nlbufsiz: u32,
    /// Give `oob.vlan` (ulogd2 has no such key).
    pub vlan: bool,
}

impl Settings {
    /// Reads and checks the options.
    pub fn from_options(o: &Options) -> Result<Settings, BuildError> {
        let u32max = u32::MAX as i64;
        let bufsize = o.int_in("bufsize", 64, i32::MAX as i64)? as usize;
        // The option table refuses values beyond a byte (ulogd kept the
        // low byte silently), so this only guards direct callers.
        let label = o.int_in("numeric_label", 0, 255)?;
        let nlbufsiz = o.int_in("netlink_nlbufsiz", 0, NLBUFSIZ_MAX)?;
        if nlbufsiz != 0 && nlbufsiz < 4096 {
            return Err(BuildError::option(
                "netlink_nlbufsiz",
                format!("{nlbufsiz} is below the kernel minimum (about one page, 4096)"),
            ));
        }
        if nlbufsiz as usize > bufsize {
            return Err(BuildError::option(
                "netlink_nlbufsiz",
                format!("{nlbufsiz} exceeds bufsize {bufsize}: batched datagrams would be cut"),
            ));
        }
        Ok(Settings {
            bufsize,
            group: o.int_in("group", 0, u16::MAX as i64)? as u16,
            unbind: o.int("unbind") > 0,
            bind: o.int("bind") > 0,
            seq_local: o.int("seq_local") != 0,
            seq_global: o.int("seq_global") != 0,
            label: label as u8,
            rcvbuf: o.int_in("netlink_socket_buffer_size", 0, i32::MAX as i64)? as usize,
            rcvbuf_max: o.int_in("netlink_socket_buffer_maxsize", 0, i32::MAX as i64)? as usize,
            qthreshold: o.int_in("netlink_qthreshold", 0, u32max)? as u32,
            qtimeout: o.int_in("netlink_qtimeout", 0, u32max)? as u32,
            attach_conntrack: o.int("attach_conntrack") != 0,
            nlbufsiz: nlbufsiz as u32,
            vlan: o.int("vlan") != 0,
        })
    }
}

/// Turns a kernel refusal into a message that says what to do about it.
pub(super) fn kernel_error(what: &str, group: u16, e: io::Error) -> BuildError {
    match rulogd_netlink::refusal::refusal(&e) {
        Refusal::NoCapability => BuildError::Other(format!(
            "NFLOG: {what}: permission denied, need CAP_NET_ADMIN (run as root or grant the capability)"
        )),
        Refusal::Taken => BuildError::Other(format!(
            "NFLOG: group {group} already bound by another process (is ulogd running? stop it, e.g. `systemctl stop ulogd2`, or log to another group)"
        )),
        Refusal::Other => BuildError::io(format!("NFLOG: {what}"), e),
    }
}

/// Sends one configuration request and waits for the kernel's verdict.
fn request(sock: &mut NlSocket, family: u8, group: u16, c: Config) -> io::Result<()> {
    let seq = sock.next_seq();
    let mut msg = Vec::with_capacity(32);
    config_request(&mut msg, seq, family, group, c);
    sock.request(&msg, seq)
}

/// Binds the group and applies the options, in ulogd's order.
pub(super) fn configure_kernel(sock: &mut NlSocket, s: &Settings) -> Result<(), BuildError> {
    if s.group == 0 || s.bind {
        for pf in [libc::AF_INET, libc::AF_INET6, libc::AF_BRIDGE] {
            let pf = pf as u8;
            if s.unbind {
                log::info!("NFLOG: forcing unbind of existing log handler for protocol {pf}");
                request(sock, pf, 0, Config::Cmd(cfg::CMD_PF_UNBIND)).map_err(|e| {
                    kernel_error(&format!("unbinding protocol family {pf}"), s.group, e)
                })?;
            }
            request(sock, pf, 0, Config::Cmd(cfg::CMD_PF_BIND))
                .map_err(|e| kernel_error(&format!("binding protocol family {pf}"), s.group, e))?;
        }
    }
    let g = s.group;
    let unspec = libc::AF_UNSPEC as u8;
    request(sock, unspec, g, Config::Cmd(cfg::CMD_BIND))
        .map_err(|e| kernel_error(&format!("binding group {g}"), g, e))?;
    let mode = Config::Mode {
        mode: cfg::COPY_PACKET,
        range: COPY_RANGE,
    };
    request(sock, unspec, g, mode)
        .map_err(|e| kernel_error(&format!("setting copy mode of group {g}"), g, e))?;
    if s.nlbufsiz != 0 {
        match request(sock, unspec, g, Config::NlBufSiz(s.nlbufsiz)) {
            Ok(()) => log::info!("NFLOG: kernel batch buffer set to {}", s.nlbufsiz),
            Err(e) => log::warn!(
                "NFLOG: kernel batch buffer can't be set to {}: {e}",
                s.nlbufsiz
            ),
        }
    }
    if s.rcvbuf != 0 {
        // ulogd skips this unless the size is below the maximum; see docs/COMPATIBILITY.md.
        let got = sock
            .set_rcvbuf(s.rcvbuf)
            .map_err(|e| BuildError::io("NFLOG: setting netlink_socket_buffer_size", e))?;
        log::info!("NFLOG netlink buffer size has been set to {got}");
    }
    if s.qthreshold != 0 {
        match request(sock, unspec, g, Config::QThresh(s.qthreshold)) {
            Ok(()) => log::info!(
                "NFLOG netlink queue threshold has been set to {}",
                s.qthreshold
            ),
            Err(e) => log::warn!(
                "NFLOG netlink queue threshold can't be set to {}: {e}",
                s.qthreshold
            ),
        }
    }
    if s.qtimeout != 0 {
        match request(sock, unspec, g, Config::Timeout(s.qtimeout)) {
            Ok(()) => log::info!("NFLOG netlink queue timeout has been set to {}", s.qtimeout),
            Err(e) => log::warn!(
                "NFLOG netlink queue timeout can't be set to {}: {e}",
                s.qtimeout
            ),
        }
    }
    let mut flags = 0;
    if s.seq_local {
        flags |= cfg::F_SEQ;
    }
    if s.seq_global {
        flags |= cfg::F_SEQ_GLOBAL;
    }
    if s.attach_conntrack {
        flags |= cfg::F_CONNTRACK;
    }
    if flags != 0 {
        // As in ulogd a refusal is not fatal: the keys these flags add are
        // simply never set.
        if let Err(e) = request(sock, unspec, g, Config::Flags(flags)) {
            log::error!("NFLOG: unable to set flags 0x{flags:x}: {e}");
            // The kernel rejects the whole set when it cannot attach
            // conntrack (no CONFIG_NETFILTER_NETLINK_GLUE_CT); unlike ulogd,
            // keep the sequence numbers that were asked for too.
            let rest = flags & !cfg::F_CONNTRACK;
            if flags & cfg::F_CONNTRACK != 0 {
                log::error!(
                    "NFLOG: attach_conntrack is not supported by this kernel; key `ct` stays empty"
                );
                if rest != 0 {
                    if let Err(e) = request(sock, unspec, g, Config::Flags(rest)) {
                        log::error!("NFLOG: unable to set flags 0x{rest:x}: {e}");
                    }
                }
            }
        }
    }
    Ok(())
}
