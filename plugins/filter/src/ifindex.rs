//! IFINDEX: interface names for `oob.ifindex_in` / `oob.ifindex_out`.
//!
//! Names come from `if_indextoname` through a per-instance cache. A
//! non-blocking rtnetlink socket subscribed to link events tells us when the
//! cache may be stale (an interface appeared, went away or was renamed); it is
//! drained every [`POLL_EVERY`] records and on every cache miss, and any event
//! clears the cache. Names are resolved in the daemon's own network namespace.

use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Filter, KeyDef, KeyType, Record, Signal, Slot, Value, Verdict,
};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

static INPUT_KEYS: [KeyDef; 2] = [
    KeyDef::new("oob.ifindex_in", KeyType::U32),
    KeyDef::new("oob.ifindex_out", KeyType::U32),
];

static OUTPUT_KEYS: [KeyDef; 2] = [
    KeyDef::new("oob.in", KeyType::String),
    KeyDef::new("oob.out", KeyType::String),
];

rulogd_plugin::plugin! {
    Filter "IFINDEX" (build): "resolves oob.ifindex_in/out to interface names (oob.in/out)";
    input &INPUT_KEYS;
    output &OUTPUT_KEYS;
}

/// Records between two checks of the link-event socket.
pub const POLL_EVERY: u32 = 1024;

/// Indexes below this live in a flat table; rarer, larger ones in a map.
const FLAT_MAX: u32 = 4096;

fn build(ctx: &BuildCtx) -> Result<Box<dyn Filter>, BuildError> {
    let events = match open_link_events() {
        Ok(fd) => Some(fd),
        Err(e) => {
            // Names still resolve; they are just refreshed on a timer instead.
            log::warn!(
                "{}: no rtnetlink link events ({e}); interface names are re-read every {POLL_EVERY} records",
                ctx.instance
            );
            None
        }
    };
    Ok(Box::new(IfIndex {
        in_in: None,
        in_out: None,
        out_in: None,
        out_out: None,
        cache: NameCache::new(events),
    }))
}

/// A non-blocking NETLINK_ROUTE socket joined to the link multicast group.
fn open_link_events() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data for which all-zero is valid.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    sa.nl_groups = libc::RTMGRP_LINK as u32;
    // SAFETY: `sa` is a valid sockaddr_nl and the length passed is its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// The interface name of `index` in this namespace, if it exists.
fn index_to_name(index: u32) -> Option<Arc<[u8]>> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname may write.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    let len = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    let name: Vec<u8> = buf[..len].iter().map(|&c| c as u8).collect();
    Some(Arc::from(name))
}

/// index → name, invalidated by link events.
pub(crate) struct NameCache {
    flat: Vec<Option<Arc<[u8]>>>,
    map: HashMap<u32, Arc<[u8]>>,
    empty: Arc<[u8]>,
    events: Option<OwnedFd>,
    since_poll: u32,
}

impl NameCache {
    pub(crate) fn new(events: Option<OwnedFd>) -> Self {
        NameCache {
            flat: Vec::new(),
            map: HashMap::new(),
            empty: Arc::from(&b""[..]),
            events,
            since_poll: 0,
        }
    }

    /// Counts one record; checks for link events every [`POLL_EVERY`].
    #[inline]
    pub(crate) fn tick(&mut self) {
        self.since_poll += 1;
        if self.since_poll >= POLL_EVERY {
            self.since_poll = 0;
            if self.events.is_none() || self.drain_events() {
                self.clear();
            }
        }
    }

    /// Forgets every name (capacity is kept).
    pub(crate) fn clear(&mut self) {
        self.flat.iter_mut().for_each(|e| *e = None);
        self.map.clear();
    }

    /// Reads and discards every pending link event; true if there was any
    /// (or if some may have been lost).
    pub(crate) fn drain_events(&mut self) -> bool {
        let Some(fd) = &self.events else {
            return false;
        };
        // The content does not matter, only that something changed, so a
        // small buffer is enough: the kernel discards the rest of a datagram.
        let mut buf = [0u8; 64];
        let mut changed = false;
        // Bounded, so an event storm cannot hold the packet path.
        for _ in 0..256 {
            // SAFETY: `buf` is valid for `buf.len()` writable bytes.
            let n = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                changed = true;
                continue;
            }
            if n == 0 {
                break;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => break,
                // ENOBUFS: events were lost; anything else: be safe.
                _ => {
                    changed = true;
                    break;
                }
            }
        }
        changed
    }

    fn lookup(&self, index: u32) -> Option<&Arc<[u8]>> {
        if index < FLAT_MAX {
            self.flat.get(index as usize).and_then(Option::as_ref)
        } else {
            self.map.get(&index)
        }
    }

    fn insert(&mut self, index: u32, name: Arc<[u8]>) {
        if index < FLAT_MAX {
            let i = index as usize;
            if self.flat.len() <= i {
                self.flat.resize(i + 1, None);
            }
            self.flat[i] = Some(name);
        } else {
            self.map.insert(index, name);
        }
    }

    /// The name of `index`; "" for 0 and for indexes that do not exist.
    pub(crate) fn name(&mut self, index: u32) -> Arc<[u8]> {
        if index == 0 {
            return self.empty.clone();
        }
        if let Some(n) = self.lookup(index) {
            return n.clone();
        }
        if self.drain_events() {
            self.clear();
        }
        match index_to_name(index) {
            Some(n) => {
                self.insert(index, n.clone());
                n
            }
            None => {
                // An unknown index is remembered only while link events can
                // tell us that it appeared.
                if self.events.is_some() {
                    self.insert(index, self.empty.clone());
                }
                self.empty.clone()
            }
        }
    }
}

struct IfIndex {
    in_in: Option<Slot>,
    in_out: Option<Slot>,
    out_in: Option<Slot>,
    out_out: Option<Slot>,
    cache: NameCache,
}

impl Filter for IfIndex {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.in_in = b.input("oob.ifindex_in");
        self.in_out = b.input("oob.ifindex_out");
        self.out_in = b.output_if_active(0);
        self.out_out = b.output_if_active(1);
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        self.cache.tick();
        // Always set, as in ulogd: an absent index reads as 0, which is "".
        for (input, output) in [(self.in_in, self.out_in), (self.in_out, self.out_out)] {
            if let Some(out) = output {
                let index = rec.get_u64(input).unwrap_or(0) as u32;
                rec.set(out, Value::Shared(self.cache.name(index)));
            }
        }
        Verdict::Continue
    }

    fn signal(&mut self, sig: Signal) {
        // A reload is a cheap moment to drop names an event may have missed.
        if sig == Signal::Hup {
            self.cache.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Harness;
    use std::os::unix::net::UnixDatagram;

    fn text(h: &Harness, k: &str) -> Vec<u8> {
        h.out_bytes(k).expect(k).to_vec()
    }

    /// Index 1 is the loopback device in every network namespace.
    fn lo() -> Vec<u8> {
        index_to_name(1).expect("interface 1").to_vec()
    }

    #[test]
    fn resolves_names_and_blanks_zero_and_unknown() {
        let mut h = Harness::new(REGISTRATION);
        h.set("oob.ifindex_in", Value::U32(0));
        h.set("oob.ifindex_out", Value::U32(1));
        assert_eq!(h.run(), Verdict::Continue);
        assert_eq!(text(&h, "oob.in"), b"");
        assert_eq!(text(&h, "oob.out"), lo());
        h.assert_gap_untouched();
        h.clear();
        h.set("oob.ifindex_in", Value::U32(0x7fff_fff0));
        h.set("oob.ifindex_out", Value::U32(1));
        h.run();
        assert_eq!(text(&h, "oob.in"), b"");
        assert_eq!(text(&h, "oob.out"), lo());
        assert!(matches!(h.out("oob.out"), Some(Value::Shared(_))));
    }

    #[test]
    fn outputs_are_always_valid() {
        let mut h = Harness::with(REGISTRATION, |_| false, |_| true);
        h.run();
        assert_eq!(h.valid_outputs(), ["oob.in", "oob.out"]);
        assert_eq!(text(&h, "oob.in"), b"");
    }

    #[test]
    fn build_opens_the_link_event_socket() {
        assert!(open_link_events().is_ok());
    }

    #[test]
    fn any_link_event_clears_the_cache() {
        let (ours, kernel) = UnixDatagram::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        let mut c = NameCache::new(Some(OwnedFd::from(ours)));
        c.insert(1, Arc::from(&b"stale"[..]));
        assert_eq!(&*c.name(1), b"stale");
        // Nothing pending: the cache survives a poll.
        for _ in 0..POLL_EVERY {
            c.tick();
        }
        assert_eq!(&*c.name(1), b"stale");
        kernel.send(b"RTM_NEWLINK").expect("send");
        kernel.send(b"RTM_DELLINK").expect("send");
        for _ in 0..POLL_EVERY {
            c.tick();
        }
        assert_eq!(c.name(1).to_vec(), lo());
        assert!(!c.drain_events());
    }

    #[test]
    fn without_events_the_cache_expires_on_a_count() {
        let mut c = NameCache::new(None);
        c.insert(1, Arc::from(&b"stale"[..]));
        c.insert(5000, Arc::from(&b"big"[..]));
        assert_eq!(&*c.name(5000), b"big");
        for _ in 0..POLL_EVERY {
            c.tick();
        }
        assert_eq!(c.name(1).to_vec(), lo());
        // Unknown indexes are not remembered without events.
        assert_eq!(&*c.name(5000), b"");
        assert!(c.lookup(5000).is_none());
    }

    #[test]
    fn unknown_indexes_are_remembered_while_events_are_watched() {
        let (ours, _kernel) = UnixDatagram::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        let mut c = NameCache::new(Some(OwnedFd::from(ours)));
        assert_eq!(&*c.name(0x7fff_fff0), b"");
        assert!(c.lookup(0x7fff_fff0).is_some());
    }
}
