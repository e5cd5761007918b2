//! The part of the test helpers that `tests/zero_alloc.rs` includes too: a
//! separate test binary cannot reach the crate's `#[cfg(test)]` items.

use rulogd_plugin::{Emitter, Record};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Counts allocations made by the current thread, to prove the steady-state
/// read paths allocate nothing.
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

/// Allocations the current thread has made so far.
pub fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

/// A non-blocking Unix datagram socket pair: one end stands in for a
/// netlink socket, the other feeds it hand-built messages.
pub fn dgram_pair() -> (OwnedFd, OwnedFd) {
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
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned here only.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Sends `d` as one datagram on `fd`, all of it.
pub fn send(fd: &OwnedFd, d: &[u8]) {
    // SAFETY: `d` is valid for its length.
    let r = unsafe { libc::send(fd.as_raw_fd(), d.as_ptr().cast(), d.len(), 0) };
    assert_eq!(
        r as usize,
        d.len(),
        "send: {}",
        std::io::Error::last_os_error()
    );
}

/// An emitter that only counts, touching every valid slot's bytes like an
/// output would, and so allocates nothing of its own.
pub struct Count {
    /// The record the input fills.
    pub rec: Record,
    /// Records emitted so far.
    pub n: usize,
}

impl Count {
    /// A counter for records of `slots` slots.
    pub fn new(slots: usize) -> Self {
        Count {
            rec: Record::with_slots(slots),
            n: 0,
        }
    }
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

/// Allocations made by `rounds` calls of `round`, after `warm` calls that
/// bring the input to its steady state.
pub fn steady_allocs(warm: usize, rounds: usize, mut round: impl FnMut()) -> u64 {
    for _ in 0..warm {
        round();
    }
    let before = allocs();
    for _ in 0..rounds {
        round();
    }
    allocs() - before
}
