//! UDP load generator for the NFLOG benchmark, modelled on the C sender of
//! baseline.md: 64-byte payloads from 100 source ports (100 flows), sent 32
//! at a time with sendmmsg, at a fixed rate (token bucket) or unlimited.
//!
//! Prints one line: `sent=N errors=E secs=T rate=R` (R in packets/s).

use rulogd_bench::Args;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: blast [--dst 127.0.0.1:9999] [--count 1M] [--rate PPS|0] \
[--payload 64] [--ports 100] [--batch 32]\n  --rate 0 (default) = as fast as possible";

fn main() {
    let args = Args::parse(USAGE);
    let dst: SocketAddr = args
        .str("dst")
        .unwrap_or("127.0.0.1:9999")
        .parse()
        .expect("--dst must be ip:port");
    let count: u64 = args.get("count", 1_000_000);
    let rate: u64 = args.get("rate", 0);
    let payload: usize = args.get("payload", 64);
    let ports: usize = args.get("ports", 100).max(1);
    let batch: usize = args.get::<usize>("batch", 32).clamp(1, 1024);

    let bind = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    // One connected socket per source port: sendmmsg then needs no address
    // per message, and each socket is one flow.
    let socks: Vec<UdpSocket> = (0..ports)
        .map(|_| {
            let s = UdpSocket::bind(bind).expect("bind");
            s.connect(dst).expect("connect");
            s
        })
        .collect();
    let buf: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid mmsghdr; every message points at the same
    // read-only payload through `iov`, which outlives the loop.
    let mut msgs: Vec<libc::mmsghdr> = (0..batch)
        .map(|_| {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = &mut iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();

    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut errors: u64 = 0;
    let mut turn = 0usize;
    while sent + errors < count {
        let done = sent + errors;
        let n = batch.min((count - done) as usize);
        if rate > 0 {
            // Token bucket without drift: message k is due at k / rate. Sleep
            // only when ahead by more than a millisecond (timer slack makes
            // shorter sleeps useless); a batch is sent as a burst.
            let due = Duration::from_secs_f64(done as f64 / rate as f64);
            let now = start.elapsed();
            if due > now + Duration::from_millis(1) {
                std::thread::sleep(due - now);
            }
        }
        let fd = socks[turn % ports].as_raw_fd();
        turn += 1;
        // SAFETY: msgs holds n valid headers.
        let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as u32, 0) };
        if r < 0 {
            // ENOBUFS/EPERM/ECONNREFUSED: the first message failed; count it
            // and go on, so a rule that drops in OUTPUT cannot hang us.
            errors += 1;
        } else {
            sent += r as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent={sent} errors={errors} secs={secs:.4} rate={:.0}",
        sent as f64 / secs.max(1e-9)
    );
}
