//! Live capture through libpcap, loaded at run time with libloading.
//!
//! libpcap gives what a sensor needs and is tedious to redo: the TPACKET_V3
//! ring with its block timeout, the BPF compiler for tcpdump's filter syntax,
//! and the kernel's drop counters. Loading `libpcap.so.0.8` at start (the
//! runtime package tcpdump already pulls in) instead of linking it keeps the
//! build free of libpcap-dev, and a daemon without CAPTURE never needs it.

use libloading::Library;
use std::ffi::{c_char, c_int, c_long, c_uint, c_void, CStr, CString};
use thiserror::Error;

/// The libraries tried, in order.
const SONAMES: [&str; 2] = ["libpcap.so.0.8", "libpcap.so.1"];
/// libpcap's error buffer size (PCAP_ERRBUF_SIZE).
const ERRBUF: usize = 256;

/// Why a live capture cannot start or go on.
#[derive(Debug, Error)]
pub enum LiveError {
    /// libpcap is not installed.
    #[error("live capture needs libpcap (libpcap.so.0.8 or libpcap.so.1): {0} (Debian: apt install libpcap0.8)")]
    NoLibrary(String),
    /// A call failed; libpcap's own message.
    #[error("{call} on {iface}: {msg}")]
    Pcap {
        /// The libpcap function.
        call: &'static str,
        /// The interface.
        iface: String,
        /// What libpcap said.
        msg: String,
    },
}

#[repr(C)]
struct Timeval {
    sec: c_long,
    usec: c_long,
}

#[repr(C)]
struct PktHdr {
    ts: Timeval,
    caplen: c_uint,
    len: c_uint,
}

#[repr(C)]
struct Stat {
    recv: c_uint,
    drop: c_uint,
    ifdrop: c_uint,
}

#[repr(C)]
struct BpfProgram {
    len: c_uint,
    insns: *mut c_void,
}

type Pcap = c_void;

/// The libpcap functions used, resolved once.
struct Api {
    create: unsafe extern "C" fn(*const c_char, *mut c_char) -> *mut Pcap,
    set_snaplen: unsafe extern "C" fn(*mut Pcap, c_int) -> c_int,
    set_promisc: unsafe extern "C" fn(*mut Pcap, c_int) -> c_int,
    set_timeout: unsafe extern "C" fn(*mut Pcap, c_int) -> c_int,
    set_buffer_size: unsafe extern "C" fn(*mut Pcap, c_int) -> c_int,
    set_tstamp_precision: unsafe extern "C" fn(*mut Pcap, c_int) -> c_int,
    activate: unsafe extern "C" fn(*mut Pcap) -> c_int,
    compile:
        unsafe extern "C" fn(*mut Pcap, *mut BpfProgram, *const c_char, c_int, c_uint) -> c_int,
    setfilter: unsafe extern "C" fn(*mut Pcap, *mut BpfProgram) -> c_int,
    freecode: unsafe extern "C" fn(*mut BpfProgram),
    setnonblock: unsafe extern "C" fn(*mut Pcap, c_int, *mut c_char) -> c_int,
    selectable_fd: unsafe extern "C" fn(*mut Pcap) -> c_int,
    next_ex: unsafe extern "C" fn(*mut Pcap, *mut *mut PktHdr, *mut *const u8) -> c_int,
    stats: unsafe extern "C" fn(*mut Pcap, *mut Stat) -> c_int,
    datalink: unsafe extern "C" fn(*mut Pcap) -> c_int,
    geterr: unsafe extern "C" fn(*mut Pcap) -> *const c_char,
    statustostr: unsafe extern "C" fn(c_int) -> *const c_char,
    close: unsafe extern "C" fn(*mut Pcap),
    // Keeps the functions above valid.
    _lib: Library,
}

impl Api {
    fn load() -> Result<Api, LiveError> {
        let mut last = String::new();
        for name in SONAMES {
            // SAFETY: loading libpcap runs its (trivial) initialisers only.
            match unsafe { Library::new(name) } {
                Ok(lib) => {
                    return Api::resolve(lib).map_err(|e| LiveError::NoLibrary(e.to_string()))
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(LiveError::NoLibrary(last))
    }

    fn resolve(lib: Library) -> Result<Api, libloading::Error> {
        // SAFETY: each symbol is looked up by its libpcap name and given the
        // C signature libpcap 1.x declares for it in pcap/pcap.h.
        unsafe {
            macro_rules! f {
                ($n:literal) => {
                    *lib.get(concat!($n, "\0").as_bytes())?
                };
            }
            Ok(Api {
                create: f!("pcap_create"),
                set_snaplen: f!("pcap_set_snaplen"),
                set_promisc: f!("pcap_set_promisc"),
                set_timeout: f!("pcap_set_timeout"),
                set_buffer_size: f!("pcap_set_buffer_size"),
                set_tstamp_precision: f!("pcap_set_tstamp_precision"),
                activate: f!("pcap_activate"),
                compile: f!("pcap_compile"),
                setfilter: f!("pcap_setfilter"),
                freecode: f!("pcap_freecode"),
                setnonblock: f!("pcap_setnonblock"),
                selectable_fd: f!("pcap_get_selectable_fd"),
                next_ex: f!("pcap_next_ex"),
                stats: f!("pcap_stats"),
                datalink: f!("pcap_datalink"),
                geterr: f!("pcap_geterr"),
                statustostr: f!("pcap_statustostr"),
                close: f!("pcap_close"),
                _lib: lib,
            })
        }
    }
}

/// How to open an interface.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// The interface name (`any` for every interface).
    pub interface: String,
    /// Promiscuous mode.
    pub promisc: bool,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// The kernel ring's size in bytes.
    pub buffer_size: u32,
    /// Longest wait before a partly filled ring block is handed over.
    pub timeout_ms: u32,
    /// A filter in tcpdump's syntax; empty for every packet.
    pub filter: String,
}

/// One packet as the ring holds it; valid until the next call to `next`.
pub struct LivePacket<'a> {
    /// The captured bytes.
    pub data: &'a [u8],
    /// Length on the wire.
    pub origlen: u32,
    /// Seconds since the epoch.
    pub sec: u64,
    /// Nanoseconds within the second.
    pub nsec: u32,
}

/// An open live capture.
pub struct Live {
    api: Api,
    p: *mut Pcap,
    iface: String,
    linktype: u16,
    /// The ring gives nanoseconds (else microseconds).
    nanos: bool,
}

// SAFETY: the handle is used by one thread at a time (the input's), which
// libpcap allows; it is never shared.
unsafe impl Send for Live {}

impl Live {
    /// Opens and activates `cfg.interface` with its filter, non-blocking.
    pub fn open(cfg: &LiveConfig) -> Result<Live, LiveError> {
        let api = Api::load()?;
        let iface = cfg.interface.clone();
        let name = CString::new(iface.as_str()).map_err(|_| LiveError::Pcap {
            call: "pcap_create",
            iface: iface.clone(),
            msg: "interface name has a NUL byte".into(),
        })?;
        let mut err = [0 as c_char; ERRBUF];
        // SAFETY: a valid C string and an error buffer of PCAP_ERRBUF_SIZE.
        let p = unsafe { (api.create)(name.as_ptr(), err.as_mut_ptr()) };
        if p.is_null() {
            return Err(LiveError::Pcap {
                call: "pcap_create",
                iface,
                // SAFETY: pcap_create wrote a NUL-terminated message.
                msg: unsafe { text(err.as_ptr()) },
            });
        }
        let mut live = Live {
            api,
            p,
            iface,
            linktype: 0,
            nanos: false,
        };
        let a = &live.api;
        // SAFETY: `p` is a valid, not yet activated handle for these setters.
        unsafe {
            (a.set_snaplen)(p, cfg.snaplen as c_int);
            (a.set_promisc)(p, c_int::from(cfg.promisc));
            (a.set_timeout)(p, cfg.timeout_ms as c_int);
            (a.set_buffer_size)(p, cfg.buffer_size as c_int);
        }
        // Nanosecond times where the kernel gives them (PCAP_TSTAMP_PRECISION_NANO).
        // SAFETY: as above.
        live.nanos = unsafe { (a.set_tstamp_precision)(p, 1) } == 0;
        // SAFETY: a valid handle.
        let r = unsafe { (a.activate)(p) };
        if r < 0 {
            let msg = live.status(r);
            return Err(live.fail("pcap_activate", msg));
        }
        if r > 0 {
            log::warn!("{}: pcap_activate: {}", live.iface, live.status(r));
        }
        if !cfg.filter.is_empty() {
            live.set_filter(&cfg.filter)?;
        }
        // SAFETY: a valid, activated handle and an error buffer.
        if unsafe { (live.api.setnonblock)(p, 1, err.as_mut_ptr()) } < 0 {
            // SAFETY: pcap_setnonblock wrote a NUL-terminated message.
            return Err(live.fail("pcap_setnonblock", unsafe { text(err.as_ptr()) }));
        }
        // SAFETY: a valid, activated handle.
        live.linktype = unsafe { (live.api.datalink)(p) } as u16;
        Ok(live)
    }

    fn status(&self, r: c_int) -> String {
        // SAFETY: valid handle; both return NUL-terminated static or
        // handle-owned strings.
        let detail = unsafe { text((self.api.geterr)(self.p)) };
        let s = unsafe { text((self.api.statustostr)(r)) };
        if detail.is_empty() {
            s
        } else {
            format!("{s} ({detail})")
        }
    }

    fn fail(&self, call: &'static str, msg: String) -> LiveError {
        LiveError::Pcap {
            call,
            iface: self.iface.clone(),
            msg,
        }
    }

    fn set_filter(&mut self, expr: &str) -> Result<(), LiveError> {
        let c = CString::new(expr)
            .map_err(|_| self.fail("pcap_compile", "filter has a NUL byte".into()))?;
        let mut prog = BpfProgram {
            len: 0,
            insns: std::ptr::null_mut(),
        };
        // PCAP_NETMASK_UNKNOWN: only broadcast tests need the netmask.
        // SAFETY: valid handle, program struct and C string.
        if unsafe { (self.api.compile)(self.p, &mut prog, c.as_ptr(), 1, 0xffff_ffff) } < 0 {
            // SAFETY: valid handle.
            let m = unsafe { text((self.api.geterr)(self.p)) };
            return Err(self.fail("pcap_compile", format!("filter `{expr}`: {m}")));
        }
        // SAFETY: a program pcap_compile filled; freed right after use.
        let r = unsafe { (self.api.setfilter)(self.p, &mut prog) };
        // SAFETY: the program pcap_compile made, freed once.
        unsafe { (self.api.freecode)(&mut prog) };
        if r < 0 {
            // SAFETY: valid handle.
            let m = unsafe { text((self.api.geterr)(self.p)) };
            return Err(self.fail("pcap_setfilter", m));
        }
        Ok(())
    }

    /// The fd to poll for packets.
    pub fn fd(&self) -> c_int {
        // SAFETY: valid, activated handle.
        unsafe { (self.api.selectable_fd)(self.p) }
    }

    /// The link type (LINKTYPE_* value) of the interface.
    pub fn linktype(&self) -> u16 {
        self.linktype
    }

    /// The next packet, or `None` when the ring has nothing ready.
    pub fn next_packet(&mut self) -> Result<Option<LivePacket<'_>>, LiveError> {
        let mut hdr: *mut PktHdr = std::ptr::null_mut();
        let mut data: *const u8 = std::ptr::null();
        // SAFETY: valid handle and out-pointers.
        match unsafe { (self.api.next_ex)(self.p, &mut hdr, &mut data) } {
            1 => {
                // SAFETY: on 1, libpcap set both pointers to a header and
                // `caplen` bytes that stay valid until the next call, which
                // the borrow of `self` in the result enforces.
                let (h, d) = unsafe {
                    (
                        &*hdr,
                        std::slice::from_raw_parts(data, (*hdr).caplen as usize),
                    )
                };
                Ok(Some(LivePacket {
                    data: d,
                    origlen: h.len,
                    sec: h.ts.sec as u64,
                    nsec: if self.nanos {
                        (h.ts.usec as u32).min(999_999_999)
                    } else {
                        (h.ts.usec as u32).min(999_999) * 1000
                    },
                }))
            }
            0 => Ok(None),
            r => {
                let m = self.status(r);
                Err(self.fail("pcap_next_ex", m))
            }
        }
    }

    /// The kernel's counters: packets seen, dropped by the ring, dropped by
    /// the interface.
    pub fn stats(&self) -> Option<(u32, u32, u32)> {
        let mut s = Stat {
            recv: 0,
            drop: 0,
            ifdrop: 0,
        };
        // SAFETY: valid handle and struct.
        (unsafe { (self.api.stats)(self.p, &mut s) } == 0).then_some((s.recv, s.drop, s.ifdrop))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // SAFETY: the handle is valid and closed once.
        unsafe { (self.api.close)(self.p) };
    }
}

/// A C string libpcap returned, as text.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the caller's promise.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}
