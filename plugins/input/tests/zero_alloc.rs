//! The steady-state read paths of UNIXSOCK and NFQUEUE allocate nothing.
//!
//! A separate test binary, because it installs a counting global allocator
//! (the unit tests of the crate already have one of their own).

use rulogd_input::nfqueue::{self, NfqueueInput};
use rulogd_input::unixsock::frame::{encode, opt};
use rulogd_input::unixsock::{self, UnixsockInput};
use rulogd_netlink::nfqueue::{attr, MSG_PACKET};
use rulogd_netlink::socket::NlSocket;
use rulogd_netlink::{finish_msg, put_attr, start_msg};
use rulogd_plugin::{Emitter, Input, Options, Record, StatSet};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

struct CountingAlloc;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        bump();
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        bump();
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        bump();
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

/// Counts records, touching every valid slot's bytes like an output would.
struct Count {
    rec: Record,
    n: usize,
}

impl Emitter for Count {
    fn record(&mut self) -> &mut Record {
        &mut self.rec
    }
    fn emit(&mut self) {
        for i in 0..self.rec.len() as u32 {
            if let Some(v) = self.rec.get(i) {
                let _ = self.rec.bytes_of(v);
            }
        }
        self.n += 1;
        self.rec.clear();
    }
}

const IP: &[u8] = &[
    0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2, 0, 8, 0, 0,
];

#[test]
fn unixsock_steady_state_does_not_allocate() {
    let dir = std::env::temp_dir().join(format!("rl-za-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let mut o = Options::defaults(&unixsock::OPTIONS).unwrap();
    o.set(&unixsock::OPTIONS[0], path.to_str().unwrap(), 1)
        .unwrap();
    let s = unixsock::Settings::from_options(&o).unwrap();
    let set = StatSet::new("t");
    let mut inp = UnixsockInput::open("t", &s, &set).unwrap();
    let mut c = UnixStream::connect(&path).unwrap();
    let mut em = Count {
        rec: Record::with_slots(unixsock::NKEYS),
        n: 0,
    };
    // 10 messages, written in pieces that cut messages in the middle.
    let mut stream = Vec::new();
    for _ in 0..10 {
        encode(
            &mut stream,
            IP,
            &[(opt::PREFIX, b"p\0"), (opt::OOB_IN, b"lo\0")],
        );
    }
    let mut round = |inp: &mut UnixsockInput, em: &mut Count| {
        for piece in stream.chunks(333) {
            c.write_all(piece).unwrap();
            while inp.read(em).unwrap() == rulogd_plugin::ReadStatus::More {}
        }
    };
    for _ in 0..5 {
        round(&mut inp, &mut em);
    }
    let before = allocs();
    for _ in 0..50 {
        round(&mut inp, &mut em);
    }
    let n = allocs() - before;
    assert_eq!(em.n, 550);
    assert_eq!(n, 0, "{n} allocations for 500 messages");
    drop(inp);
    let _ = std::fs::remove_dir_all(&dir);
}

fn queued(id: u32) -> Vec<u8> {
    let mut v = Vec::new();
    let s = start_msg(&mut v, MSG_PACKET, 0, 0);
    v.extend_from_slice(&[2, 0, 0, 3]);
    let i = id.to_be_bytes();
    put_attr(&mut v, attr::PACKET_HDR, &[i[0], i[1], i[2], i[3], 8, 0, 1]);
    put_attr(&mut v, attr::PAYLOAD, IP);
    finish_msg(&mut v, s);
    v
}

#[test]
fn nfqueue_steady_state_does_not_allocate() {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair() writes.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0);
    // SAFETY: both fds were just created and are owned here only.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let o = Options::defaults(&nfqueue::OPTIONS).unwrap();
    let s = nfqueue::Settings::from_options(&o).unwrap();
    let set = StatSet::new("t");
    let mut inp = NfqueueInput::new("t", &s, NlSocket::from_fd(a), &set);
    let mut em = Count {
        rec: Record::with_slots(nfqueue::NKEYS),
        n: 0,
    };
    let msgs: Vec<Vec<u8>> = (1..=20).map(queued).collect();
    let round = |inp: &mut NfqueueInput, em: &mut Count| {
        for m in &msgs {
            // SAFETY: `m` is valid for its length.
            unsafe { libc::send(b.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) };
        }
        while inp.read(em).unwrap() == rulogd_plugin::ReadStatus::More {}
    };
    round(&mut inp, &mut em);
    let before = allocs();
    for _ in 0..20 {
        round(&mut inp, &mut em);
    }
    let n = allocs() - before;
    assert_eq!(em.n, 420);
    assert_eq!(n, 0, "{n} allocations for 400 packets");
}
