//! A bare NFLOG receiver: binds a group over raw netlink, reads and counts
//! NFULNL_MSG_PACKET messages without decoding them. It is the physical limit
//! the daemons are compared with (baseline.md's `nflog_sink`).
//!
//! Runs until SIGTERM/SIGINT, then prints `received=N enobufs=E`.
//!
//! `--dump FILE` also writes every datagram it receives to FILE, each as a
//! native-endian u32 length followed by the bytes: the input of the
//! in-process `pipeline` benchmark.

use rulogd_bench::Args;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

const USAGE: &str = "usage: nflog-sink --group N [--rcvbuf 8388608] [--qthreshold N] \
[--nlbufsiz BYTES] [--timeout CENTISECONDS] [--dump FILE]";

// include/uapi/linux/netfilter/nfnetlink.h, nfnetlink_log.h
const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_NLBUFSIZ: u16 = 3;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Nl(i32);

impl Drop for Nl {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

/// Appends a netlink attribute (4-byte aligned).
fn attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    while buf.len() & 3 != 0 {
        buf.push(0);
    }
}

impl Nl {
    fn open(rcvbuf: i32) -> io::Result<Nl> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let nl = Nl(fd);
        // SAFETY: zeroed sockaddr_nl is valid; nl_pid 0 lets the kernel pick.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        // SAFETY: valid fd and address.
        if unsafe { libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) } < 0 {
            return Err(io::Error::last_os_error());
        }
        nl.setopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf)?;
        // Lets recv time out so SIGTERM is noticed even with no traffic.
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: valid fd; option value is a timeval.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(nl)
    }

    fn setopt(&self, level: i32, name: i32, v: i32) -> io::Result<()> {
        // SAFETY: valid fd; option value is an int.
        let r = unsafe {
            libc::setsockopt(
                self.0,
                level,
                name,
                &v as *const i32 as *const libc::c_void,
                4,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Sends one NFULNL_MSG_CONFIG request for `group` with `attrs` and
    /// waits for the kernel's ACK.
    fn config(&self, group: u16, seq: u32, attrs: &[u8]) -> io::Result<()> {
        let mut m = Vec::with_capacity(64);
        let len = (16 + 4 + attrs.len()) as u32;
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
        m.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family AF_UNSPEC, version 0, res_id = group (big endian).
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&group.to_be_bytes());
        m.extend_from_slice(attrs);
        // SAFETY: valid buffer; the socket is bound, send goes to the kernel.
        if unsafe { libc::send(self.0, m.as_ptr() as *const libc::c_void, m.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 8192];
        // SAFETY: valid buffer.
        let n = unsafe { libc::recv(self.0, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if n < 20 {
            return Err(io::Error::other("no ACK from nfnetlink_log"));
        }
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        let err = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if ty == libc::NLMSG_ERROR as u16 && err != 0 {
            return Err(io::Error::from_raw_os_error(-err));
        }
        Ok(())
    }
}

/// Counts NFULNL_MSG_PACKET messages in one datagram (a kernel batch).
fn count_packets(buf: &[u8]) -> u64 {
    let mut off = 0;
    let mut n = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < 16 {
            break;
        }
        if ty == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET {
            n += 1;
        }
        off += (len + 3) & !3;
    }
    n
}

fn main() -> io::Result<()> {
    let args = Args::parse(USAGE);
    let group: u16 = args.get("group", 5);
    let rcvbuf: i32 = args.get("rcvbuf", 8_388_608);
    let nl = Nl::open(rcvbuf)?;
    nl.config(group, 1, &{
        let mut a = Vec::new();
        attr(&mut a, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
        a
    })?;
    let mut a = Vec::new();
    // struct nfulnl_msg_config_mode { __be32 copy_range; __u8 copy_mode; __u8 _pad; }
    let mut mode = 0xffffu32.to_be_bytes().to_vec();
    mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
    attr(&mut a, NFULA_CFG_MODE, &mode);
    for (name, ty) in [
        ("qthreshold", NFULA_CFG_QTHRESH),
        ("nlbufsiz", NFULA_CFG_NLBUFSIZ),
        ("timeout", NFULA_CFG_TIMEOUT),
    ] {
        if args.str(name).is_some() {
            attr(&mut a, ty, &args.get::<u32>(name, 0).to_be_bytes());
        }
    }
    nl.config(group, 2, &a)?;

    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
    let mut dump = match args.str("dump") {
        Some(p) => Some(io::BufWriter::new(std::fs::File::create(p)?)),
        None => None,
    };
    let mut buf = vec![0u8; 1 << 20];
    let (mut received, mut enobufs) = (0u64, 0u64);
    // After SIGTERM, read on until the socket is empty: whatever the kernel
    // had already queued counts as received.
    let mut flags = 0;
    loop {
        if STOP.load(Ordering::Relaxed) {
            flags = libc::MSG_DONTWAIT;
        }
        // SAFETY: valid buffer.
        let n = unsafe {
            libc::recv(
                nl.0,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                flags,
            )
        };
        if n >= 0 {
            let d = &buf[..n as usize];
            if let Some(w) = dump.as_mut() {
                w.write_all(&(d.len() as u32).to_ne_bytes())?;
                w.write_all(d)?;
            }
            received += count_packets(d);
            continue;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // The kernel could not queue a batch: messages were lost.
            Some(libc::ENOBUFS) => enobufs += 1,
            Some(libc::EAGAIN | libc::EINTR) => {
                if flags != 0 {
                    break;
                }
            }
            _ => return Err(err),
        }
    }
    if let Some(mut w) = dump {
        w.flush()?;
    }
    println!("received={received} enobufs={enobufs}");
    Ok(())
}
