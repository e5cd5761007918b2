//! NFQUEUE options and the kernel side of start-up: binding the queue and
//! applying copy mode, queue length and flags, with refusals worded for the
//! operator.

use rulogd_netlink::nfqueue::{cfg, config_request, Config};
use rulogd_netlink::refusal::Refusal;
use rulogd_netlink::socket::NlSocket;
use rulogd_plugin::{BuildError, OptValue, OptionDef, Options};
use std::io;

/// Room a queued packet's message needs besides its payload: headers and
/// every attribute the kernel may add (conntrack being the largest).
pub const MSG_OVERHEAD: usize = 4096;

/// The options: NFLOG's where they mean the same, then the queue's own.
pub static OPTIONS: [OptionDef; 12] = [
    OptionDef::int("queue_num", "0", "NFQUEUE number to bind (nft `queue num N`, iptables `-j NFQUEUE --queue-num N`)").range(0, 65535).unique(),
    OptionDef::int("queue_maxlen", "0", "packets the kernel may hold waiting for a verdict; 0 keeps the kernel default (1024)").range(0, u32::MAX as i64),
    OptionDef::str("verdict", "accept", "what every packet is told after it was logged: `accept`, or `mark` (accept and set the packet mark to verdict_mark)").check(verdict_word),
    OptionDef::int("verdict_mark", "0", "the mark set with verdict=mark (32 bits, whole mark replaced)").range(0, u32::MAX as i64).check(mark_needs_verdict),
    OptionDef::int("fail_open", "1", "when the queue is full or the socket cannot take more, the kernel accepts packets instead of dropping them (they are not logged)").flag(),
    OptionDef::int("copy_range", "0xffff", "bytes of each packet copied to rulogd (1-65535; the kernel caps it at 65531)").range(1, 0xffff),
    OptionDef::int("gso", "1", "take GSO packets whole, as NFLOG logs them, instead of having the kernel segment them first").flag(),
    OptionDef::int("attach_conntrack", "0", "attach the packet's conntrack entry as key `ct`").flag(),
    OptionDef::int("numeric_label", "0", "constant exported as raw.label (0-255)").range(0, 255),
    OptionDef::int("bufsize", "150000", "size of the userspace receive buffer in bytes; at least copy_range + 4096").range(1, i32::MAX as i64).check(bufsize_fits_copy_range),
    OptionDef::int("netlink_socket_buffer_size", "0", "netlink socket receive buffer in bytes (SO_RCVBUFFORCE, else SO_RCVBUF); 0 keeps the system default").range(0, i32::MAX as i64),
    OptionDef::int("netlink_socket_buffer_maxsize", "0", "on ENOBUFS, double the receive buffer up to this many bytes; 0 never grows it").range(0, i32::MAX as i64),
];

/// `verdict` is matched exactly, as the builder does.
fn verdict_word(v: &OptValue, _: &Options) -> Result<(), String> {
    match v {
        OptValue::Str(s) if s == "accept" || s == "mark" => Ok(()),
        other => Err(format!("`{other}` is not one of: accept, mark")),
    }
}

/// `verdict_mark` means something only with `verdict=mark`.
fn mark_needs_verdict(_: &OptValue, o: &Options) -> Result<(), String> {
    if o.is_set("verdict_mark") && o.str("verdict") != "mark" {
        return Err("only used with verdict=mark; set verdict=mark or remove it".into());
    }
    Ok(())
}

/// A queued packet's message must fit in the receive buffer.
fn bufsize_fits_copy_range(_: &OptValue, o: &Options) -> Result<(), String> {
    let (b, c) = (o.int("bufsize"), o.int("copy_range"));
    let need = c + MSG_OVERHEAD as i64;
    if b < need {
        return Err(format!(
            "{b} is too small for copy_range {c}: needs at least {need}"
        ));
    }
    Ok(())
}

/// Validated options of one NFQUEUE instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Queue number.
    pub queue: u16,
    /// Kernel queue length (0 = kernel default).
    pub maxlen: u32,
    /// `Some(mark)` for verdict=mark.
    pub mark: Option<u32>,
    /// `NFQA_CFG_F_FAIL_OPEN`.
    pub fail_open: bool,
    /// Copy range.
    pub copy_range: u32,
    /// `NFQA_CFG_F_GSO`.
    pub gso: bool,
    /// `NFQA_CFG_F_CONNTRACK`.
    pub attach_conntrack: bool,
    /// `raw.label`.
    pub label: u8,
    /// Userspace receive buffer size.
    pub bufsize: usize,
    /// Initial socket receive buffer (0 = leave alone).
    pub rcvbuf: usize,
    /// Growth limit for the receive buffer (0 = never grow).
    pub rcvbuf_max: usize,
}

impl Settings {
    /// Reads and checks the options.
    pub fn from_options(o: &Options) -> Result<Settings, BuildError> {
        let mark = match o.str("verdict") {
            "accept" => {
                if o.is_set("verdict_mark") {
                    return Err(BuildError::option(
                        "verdict_mark",
                        "only used with verdict=mark; set verdict=mark or remove it",
                    ));
                }
                None
            }
            "mark" => Some(o.int_in("verdict_mark", 0, u32::MAX as i64)? as u32),
            v => {
                return Err(BuildError::option(
                    "verdict",
                    format!("`{v}` is not one of: accept, mark"),
                ))
            }
        };
        let copy_range = o.int_in("copy_range", 1, 0xffff)? as u32;
        let bufsize = o.int_in("bufsize", 1, i32::MAX as i64)? as usize;
        let need = copy_range as usize + MSG_OVERHEAD;
        if bufsize < need {
            return Err(BuildError::option(
                "bufsize",
                format!(
                    "{bufsize} is too small for copy_range {copy_range}: needs at least {need}"
                ),
            ));
        }
        let label = o.int_in("numeric_label", 0, 255)? as u8;
        Ok(Settings {
            queue: o.int_in("queue_num", 0, u16::MAX as i64)? as u16,
            maxlen: o.int_in("queue_maxlen", 0, u32::MAX as i64)? as u32,
            mark,
            fail_open: o.int("fail_open") != 0,
            copy_range,
            gso: o.int("gso") != 0,
            attach_conntrack: o.int("attach_conntrack") != 0,
            label,
            bufsize,
            rcvbuf: o.int_in("netlink_socket_buffer_size", 0, i32::MAX as i64)? as usize,
            rcvbuf_max: o.int_in("netlink_socket_buffer_maxsize", 0, i32::MAX as i64)? as usize,
        })
    }

    /// The flags to ask for, and which of them rulogd manages.
    pub fn flags(&self) -> (u32, u32) {
        let mask = cfg::F_FAIL_OPEN | cfg::F_GSO | cfg::F_CONNTRACK | cfg::F_UID_GID;
        let mut f = cfg::F_UID_GID;
        if self.fail_open {
            f |= cfg::F_FAIL_OPEN;
        }
        if self.gso {
            f |= cfg::F_GSO;
        }
        if self.attach_conntrack {
            f |= cfg::F_CONNTRACK;
        }
        (mask, f)
    }
}

/// Turns a kernel refusal into a message that says what to do about it.
pub(super) fn kernel_error(what: &str, queue: u16, e: io::Error) -> BuildError {
    match rulogd_netlink::refusal::refusal(&e) {
        Refusal::NoCapability => BuildError::Other(format!(
            "NFQUEUE: {what}: permission denied, need CAP_NET_ADMIN (run as root or grant the capability)"
        )),
        // The kernel answers EBUSY to a bind of a queue another socket has,
        // and EPERM to any other request for it.
        Refusal::Taken => BuildError::Other(format!(
            "NFQUEUE: queue {queue} already bound by another process (stop it, or queue to another number)"
        )),
        Refusal::Other => BuildError::io(format!("NFQUEUE: {what}"), e),
    }
}

/// Sends one configuration request and waits for the kernel's answer.
pub(super) fn request(sock: &mut NlSocket, queue: u16, c: &[Config]) -> io::Result<()> {
    let seq = sock.next_seq();
    let mut msg = Vec::with_capacity(64);
    config_request(&mut msg, seq, queue, c);
    sock.request(&msg, seq)
}

/// Binds the queue and applies the options.
pub(super) fn configure_kernel(sock: &mut NlSocket, s: &Settings) -> Result<(), BuildError> {
    let q = s.queue;
    // Bind and copy mode in one request, so that no packet is ever queued
    // to this socket without its payload.
    let bind = [
        Config::Cmd(cfg::CMD_BIND),
        Config::Params {
            mode: cfg::COPY_PACKET,
            range: s.copy_range,
        },
    ];
    request(sock, q, &bind).map_err(|e| kernel_error(&format!("binding queue {q}"), q, e))?;
    if s.maxlen != 0 {
        request(sock, q, &[Config::MaxLen(s.maxlen)])
            .map_err(|e| kernel_error(&format!("setting queue_maxlen of queue {q}"), q, e))?;
    }
    let (mask, flags) = s.flags();
    if let Err(e) = request(sock, q, &[Config::Flags { mask, flags }]) {
        // uid/gid and conntrack depend on kernel support; fail-open and GSO
        // are what the options promise, so try those alone before failing.
        let (mask2, flags2) = (
            cfg::F_FAIL_OPEN | cfg::F_GSO,
            flags & (cfg::F_FAIL_OPEN | cfg::F_GSO),
        );
        log::warn!("NFQUEUE: queue {q}: flags 0x{flags:x} refused ({e}); retrying without uid/gid and conntrack");
        request(
            sock,
            q,
            &[Config::Flags {
                mask: mask2,
                flags: flags2,
            }],
        )
        .map_err(|e| kernel_error(&format!("setting flags of queue {q}"), q, e))?;
    }
    if s.rcvbuf != 0 {
        let got = sock
            .set_rcvbuf(s.rcvbuf)
            .map_err(|e| BuildError::io("NFQUEUE: setting netlink_socket_buffer_size", e))?;
        log::info!("NFQUEUE netlink buffer size has been set to {got}");
    }
    Ok(())
}
