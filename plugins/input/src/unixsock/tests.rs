//! Parser tests over hand-built messages, the fuzz corpus replayed, and the
//! input driven through real Unix sockets in a temporary directory.

use super::frame::{decode, encode, frames, opt, parse_frame, FrameError, MARKER};
use super::*;
use crate::testutil::{binding, lookup, options, stat, Collect};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A minimal IPv4/UDP packet (checksums are not looked at here).
fn ipv4_udp() -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 29, 0, 1, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
    ];
    p.extend_from_slice(&[0x30, 0x39, 0x27, 0x0f, 0, 9, 0, 0, b'x']);
    p
}

fn one(payload: &[u8], options: &[(u32, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    encode(&mut v, payload, options);
    v
}

fn text(buf: &[u8], s: Option<Span>) -> Option<&[u8]> {
    s.map(|s| &buf[s.off as usize..(s.off + s.len) as usize])
}

use rulogd_plugin::Span;

#[test]
fn round_trip_with_every_option() {
    let pkt = ipv4_udp();
    let t = 1_700_000_000u32.to_ne_bytes();
    let uid = 1000u32.to_ne_bytes();
    let m = one(
        &pkt,
        &[
            (opt::PREFIX, b"pfx\0"),
            (opt::OOB_IN, b"eth0\0"),
            (opt::OOB_OUT, b"eth1"),
            (opt::TIME_SEC, &t),
            (opt::USER, b"alice\0"),
            (opt::USER_ID, &uid),
            (opt::OS_NAME, b"Linux\0"),
            (opt::OS_REL, b"6.1\0"),
            (opt::OS_VERS, b"#1\0"),
            (opt::APP_NAME, b"/usr/bin/curl\0"),
            (opt::STATE, &[2]),
            (77, b"??"),
        ],
    );
    assert_eq!(m.len() % 8, 4, "8-aligned after the marker");
    let f = parse_frame(&m, 0).unwrap().unwrap();
    assert_eq!(f.len, m.len());
    assert_eq!(f.payload, Span::new(12, pkt.len()));
    let d = decode(&m, &f).unwrap();
    assert_eq!(d.family, 2);
    assert_eq!(text(&m, d.prefix), Some(&b"pfx"[..]));
    assert_eq!(text(&m, d.oob_in), Some(&b"eth0"[..]));
    // No NUL inside the value: the string is the whole value.
    assert_eq!(text(&m, d.oob_out), Some(&b"eth1"[..]));
    assert_eq!(d.time_sec, Some(1_700_000_000));
    assert_eq!(text(&m, d.user_name), Some(&b"alice"[..]));
    assert_eq!(d.user_id, Some(1000));
    assert_eq!(text(&m, d.app_name), Some(&b"/usr/bin/curl"[..]));
    assert_eq!(d.label, Some(2));
    assert_eq!((d.unknown, d.first_unknown), (1, Some(77)));
}

#[test]
fn no_options_reads_nothing_past_the_payload() {
    // ulogd 2.0.8 walks into the next message here; its marker would be
    // read as an option id.
    let mut s = one(&ipv4_udp(), &[]);
    s.extend(one(&ipv4_udp(), &[(opt::PREFIX, b"second\0")]));
    let fs: Vec<_> = frames(&s).collect::<Result<_, _>>().unwrap();
    assert_eq!(fs.len(), 2);
    let d = decode(&s, &fs[0]).unwrap();
    assert_eq!((d.prefix, d.unknown), (None, 0));
    assert_eq!(
        text(&s, decode(&s, &fs[1]).unwrap().prefix),
        Some(&b"second"[..])
    );
}

#[test]
fn unpadded_payload_without_options_is_accepted() {
    // A sender that does not pad a lone payload: total = 8 + payload.
    let pkt = ipv4_udp();
    let mut m = MARKER.to_be_bytes().to_vec();
    m.extend_from_slice(&(8 + pkt.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x10, 0, 0, 0]);
    m.extend_from_slice(&(pkt.len() as u16).to_be_bytes());
    m.extend_from_slice(&pkt);
    let f = parse_frame(&m, 0).unwrap().unwrap();
    assert_eq!(f.version, 1);
    let d = decode(&m, &f).unwrap();
    assert_eq!((d.family, d.payload.len as usize), (2, pkt.len()));
}

#[test]
fn family_from_the_version_nibble() {
    let f = |first: u8| {
        let m = one(&[first, 0, 0, 0], &[]);
        decode(&m, &parse_frame(&m, 0).unwrap().unwrap())
            .unwrap()
            .family
    };
    assert_eq!((f(0x45), f(0x60), f(0x00)), (2, 10, 0));
    let m = one(&[], &[]);
    assert_eq!(
        decode(&m, &parse_frame(&m, 0).unwrap().unwrap())
            .unwrap()
            .family,
        0
    );
}

#[test]
fn header_errors() {
    assert_eq!(
        parse_frame(b"GET / HTTP", 0),
        Err(FrameError::BadMarker { found: 0x4745_5420 })
    );
    // Three bytes: not yet known to be wrong.
    assert_eq!(parse_frame(b"GET", 0), Ok(None));
    let mut m = one(&ipv4_udp(), &[]);
    m[4..6].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(
        parse_frame(&m, 0),
        Err(FrameError::TotalTooSmall { total: 7 })
    );
    let mut m = one(&ipv4_udp(), &[]);
    m[10..12].copy_from_slice(&500u16.to_be_bytes());
    assert!(matches!(
        parse_frame(&m, 0),
        Err(FrameError::PayloadTooLong { payload: 500, .. })
    ));
    // A valid header whose message has not fully arrived.
    let m = one(&ipv4_udp(), &[(opt::PREFIX, b"p\0")]);
    assert_eq!(parse_frame(&m[..m.len() - 1], 0), Ok(None));
}

#[test]
fn option_errors_and_leniency() {
    let mut m = one(&ipv4_udp(), &[(opt::PREFIX, b"abc\0")]);
    let at = 12 + 32;
    m[at + 4..at + 8].copy_from_slice(&100u32.to_be_bytes());
    let f = parse_frame(&m, 0).unwrap().unwrap();
    assert!(matches!(
        decode(&m, &f),
        Err(FrameError::OptionTooLong {
            id: 1,
            len: 100,
            ..
        })
    ));
    // A short integer option is skipped and counted; trailing bytes shorter
    // than an option header are padding.
    let mut m = one(&ipv4_udp(), &[(opt::TIME_SEC, &[1, 2]), (opt::STATE, &[])]);
    m.extend_from_slice(&[0, 0, 0]);
    let total = (m.len() - 4) as u16;
    m[4..6].copy_from_slice(&total.to_be_bytes());
    let d = decode(&m, &parse_frame(&m, 0).unwrap().unwrap()).unwrap();
    assert_eq!((d.time_sec, d.label, d.short), (None, None, 2));
}

#[test]
fn frames_stop_at_partial_and_report_garbage() {
    let a = one(&ipv4_udp(), &[(opt::PREFIX, b"a\0")]);
    let mut s = a.clone();
    s.extend_from_slice(&a[..20]);
    let mut it = frames(&s);
    assert!(it.next().unwrap().is_ok());
    assert!(it.next().is_none());
    assert_eq!(it.consumed(), a.len());
    let mut s = a.clone();
    s.extend_from_slice(b"garbage!");
    let mut it = frames(&s);
    assert!(it.next().unwrap().is_ok());
    assert!(matches!(it.next(), Some(Err(FrameError::BadMarker { .. }))));
    assert!(it.next().is_none());
    assert_eq!(it.consumed(), a.len());
}

#[test]
fn replays_the_fuzz_corpus() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/corpus/unixsock");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        panic!("corpus missing at {}", dir.display());
    };
    let mut n = 0;
    for e in rd.flatten() {
        let data = std::fs::read(e.path()).expect("readable corpus file");
        let mut clean = true;
        let mut it = frames(&data);
        for f in it.by_ref() {
            match f {
                Ok(f) => {
                    assert!(f.end() <= data.len());
                    match decode(&data, &f) {
                        Ok(d) => {
                            for s in [d.payload].into_iter().chain(d.prefix).chain(d.oob_in) {
                                assert!((s.off + s.len) as usize <= f.end());
                            }
                        }
                        Err(_) => clean = false,
                    }
                }
                Err(_) => clean = false,
            }
        }
        let whole = it.consumed() == data.len();
        let name = e.file_name();
        if name.to_string_lossy().starts_with("hand-") {
            assert!(
                clean && whole,
                "{} does not parse cleanly",
                e.path().display()
            );
        }
        n += 1;
    }
    assert!(n > 0, "empty corpus at {}", dir.display());
}

// ---- The input over real sockets ----

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A directory removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new() -> Tmp {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("rl-us-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
    fn sock(&self) -> PathBuf {
        self.0.join("s.sock")
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn settings(path: &Path, extra: &[(&str, &str)]) -> Result<Settings, BuildError> {
    let mut pairs = vec![("socket_path", path.to_str().unwrap())];
    pairs.extend_from_slice(extra);
    Settings::from_options(&options(&OPTIONS, &pairs))
}

fn get<'a>(snap: &'a [(&'static str, String)], k: &str) -> Option<&'a str> {
    lookup(snap, k).map(String::as_str)
}

/// Collects the strings and integers of every emitted record.
fn collect() -> Collect<String> {
    Collect::with(&KEYS, |rec, v| match v.as_u64() {
        Some(n) => n.to_string(),
        None => String::from_utf8_lossy(rec.bytes_of(v).unwrap_or_default()).into(),
    })
}

/// Calls `read` until `done` holds or 5 s pass.
fn pump(
    inp: &mut UnixsockInput,
    em: &mut Collect<String>,
    mut done: impl FnMut(&Collect<String>) -> bool,
) {
    let end = Instant::now() + Duration::from_secs(5);
    while !done(em) {
        assert!(
            Instant::now() < end,
            "timed out with {} records",
            em.out.len()
        );
        if inp.read(em).unwrap() == ReadStatus::Idle {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn open(t: &Tmp) -> (UnixsockInput, Arc<StatSet>) {
    let set = StatSet::new("t (UNIXSOCK)");
    let inp = UnixsockInput::open("t", &settings(&t.sock(), &[]).unwrap(), &set).unwrap();
    (inp, set)
}

use std::sync::Arc;

#[test]
fn two_clients_and_a_bad_one() {
    let t = Tmp::new();
    let (mut inp, set) = open(&t);
    assert!(inp.bufsize() >= frame::MAX_FRAME);
    let mut em = collect();
    let mut good = UnixStream::connect(t.sock()).unwrap();
    let mut other = UnixStream::connect(t.sock()).unwrap();
    let mut bad = UnixStream::connect(t.sock()).unwrap();
    let mut stream = Vec::new();
    for i in 0..50u32 {
        let p = format!("g{i}\0");
        encode(
            &mut stream,
            &ipv4_udp(),
            &[(opt::PREFIX, p.as_bytes()), (opt::OOB_IN, b"lo\0")],
        );
    }
    // The good client dribbles its stream in odd-sized pieces, so messages
    // straddle reads; the bad one sends one message, then garbage.
    bad.write_all(&one(&ipv4_udp(), &[(opt::PREFIX, b"bad-ok\0")]))
        .unwrap();
    bad.write_all(b"\x00\x01garbage that is no marker").unwrap();
    for piece in stream.chunks(37) {
        good.write_all(piece).unwrap();
        inp.read(&mut em).unwrap();
    }
    other
        .write_all(&one(&ipv4_udp(), &[(opt::PREFIX, b"other\0")]))
        .unwrap();
    pump(&mut inp, &mut em, |e| e.out.len() >= 52);
    let prefixes: Vec<&str> = em.out.iter().filter_map(|r| get(r, "oob.prefix")).collect();
    let goods: Vec<&str> = prefixes
        .iter()
        .copied()
        .filter(|p| p.starts_with('g'))
        .collect();
    let want: Vec<String> = (0..50).map(|i| format!("g{i}")).collect();
    assert_eq!(goods, want, "the good client's messages, in order");
    assert!(prefixes.contains(&"bad-ok") && prefixes.contains(&"other"));
    let r = &em.out[0];
    assert_eq!(get(r, "oob.family"), Some("2"));
    assert_eq!(get(r, "raw.pktcount"), Some("1"));
    assert_eq!(get(r, "raw.pktlen"), Some("29"));
    // The bad client was disconnected: it reads end of stream.
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 8];
    assert_eq!(bad.read(&mut b).unwrap(), 0);
    assert_eq!(stat(&set, "malformed"), 1);
    assert_eq!(stat(&set, "clients"), 3);
    assert_eq!(stat(&set, "connected"), 2);
    assert_eq!(stat(&set, "received"), 52);
    // The others still work after the bad one is gone.
    good.write_all(&one(&ipv4_udp(), &[(opt::PREFIX, b"after\0")]))
        .unwrap();
    pump(&mut inp, &mut em, |e| e.out.len() >= 53);
    assert_eq!(get(&em.out[52], "oob.prefix"), Some("after"));
    drop(good);
    drop(other);
    pump(&mut inp, &mut em, |_| stat(&set, "connected") == 0);
}

#[test]
fn unbound_keys_are_skipped_and_label_user_id_set() {
    let t = Tmp::new();
    let (mut inp, _set) = open(&t);
    let b = binding(&KEYS, |k| k.name != "oob.prefix");
    inp.bind(&b).unwrap();
    let mut em = collect();
    let mut c = UnixStream::connect(t.sock()).unwrap();
    let uid = 42u32.to_ne_bytes();
    c.write_all(&one(
        &ipv4_udp(),
        &[
            (opt::PREFIX, b"x\0"),
            (opt::STATE, &[3]),
            (opt::USER_ID, &uid),
        ],
    ))
    .unwrap();
    pump(&mut inp, &mut em, |e| !e.out.is_empty());
    let r = &em.out[0];
    assert_eq!(get(r, "oob.prefix"), None);
    assert_eq!(get(r, "raw.label"), Some("3"));
    assert_eq!(get(r, "nufw.user.id"), Some("42"));
}

#[test]
fn stale_socket_is_replaced_live_one_refused() {
    let t = Tmp::new();
    // A socket file whose listener is gone.
    drop(UnixListener::bind(t.sock()).unwrap());
    assert!(t.sock().exists());
    let (inp, _) = open(&t);
    // Now someone listens: a second instance must refuse.
    let set = StatSet::new("u");
    let err = UnixsockInput::open("u", &settings(&t.sock(), &[]).unwrap(), &set)
        .err()
        .expect("in use");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(inp);
    assert!(!t.sock().exists(), "removed at stop");
    // Not a socket: left alone, with a clear error.
    std::fs::write(t.sock(), b"data").unwrap();
    let err = UnixsockInput::open("u", &settings(&t.sock(), &[]).unwrap(), &set)
        .err()
        .expect("not a socket");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(t.sock()).unwrap(), b"data");
}

#[test]
fn perms_and_option_checks() {
    let t = Tmp::new();
    let set = StatSet::new("t");
    let s = settings(
        &t.sock(),
        &[("perms", "0640"), ("owner", "root"), ("group", "0")],
    );
    let inp = UnixsockInput::open("t", &s.unwrap(), &set).unwrap();
    let mode = std::fs::metadata(t.sock()).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o640);
    drop(inp);
    assert!(settings(&t.sock(), &[("perms", "070000")]).is_err());
    assert!(settings(&t.sock(), &[("bufsize", "-1")]).is_err());
    let s = settings(&t.sock(), &[("owner", "no-such-user-rulogd")]).unwrap();
    let err = UnixsockInput::open("t", &s, &set).err().expect("bad owner");
    assert!(err.to_string().contains("no user"), "{err}");
    assert!(!t.sock().exists(), "no socket left behind");
    let long = t.0.join("x".repeat(120));
    let err = UnixsockInput::open("t", &settings(&long, &[]).unwrap(), &set)
        .err()
        .expect("too long");
    assert!(err.to_string().contains("shorter than"), "{err}");
    // A small bufsize is raised so that the largest message fits.
    let s = settings(&t.sock(), &[("bufsize", "4096")]).unwrap();
    let inp = UnixsockInput::open("t", &s, &set).unwrap();
    assert_eq!(inp.bufsize(), frame::MAX_FRAME);
}

#[test]
fn largest_message_and_disconnect_mid_message() {
    let t = Tmp::new();
    let (mut inp, set) = open(&t);
    let mut em = collect();
    let mut c = UnixStream::connect(t.sock()).unwrap();
    // The largest message: a lone payload is allowed to go unpadded.
    let big = vec![0x60u8; u16::MAX as usize - 8];
    let mut m = MARKER.to_be_bytes().to_vec();
    m.extend_from_slice(&u16::MAX.to_be_bytes());
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&(big.len() as u16).to_be_bytes());
    m.extend_from_slice(&big);
    assert_eq!(m.len(), frame::MAX_FRAME);
    let w = std::thread::spawn(move || {
        c.write_all(&m).unwrap();
        c.write_all(&m[..100]).unwrap();
    });
    pump(&mut inp, &mut em, |e| !e.out.is_empty());
    w.join().unwrap();
    assert_eq!(get(&em.out[0], "oob.family"), Some("10"));
    assert_eq!(get(&em.out[0], "raw.pktlen"), Some("65527"));
    pump(&mut inp, &mut em, |_| stat(&set, "truncated") == 1);
    assert_eq!(stat(&set, "connected"), 0);
}

/// At the client limit the listener pauses: the connections beyond it wait
/// in the backlog with what they sent, nothing is closed, and they are
/// served once clients leave.
#[test]
fn limit_pauses_accepting_and_loses_nothing() {
    const EXTRA: usize = 40;
    let t = Tmp::new();
    let (mut inp, set) = open(&t);
    let mut em = collect();
    let mut held = Vec::new();
    for i in 0..MAX_CLIENTS + EXTRA {
        let mut c = UnixStream::connect(t.sock()).unwrap();
        let p = format!("c{i}\0");
        c.write_all(&one(&ipv4_udp(), &[(opt::PREFIX, p.as_bytes())]))
            .unwrap();
        held.push(c);
        // Accepts as clients come, so the backlog never holds more than
        // the ones over the limit.
        inp.read(&mut em).unwrap();
    }
    pump(&mut inp, &mut em, |e| e.out.len() >= MAX_CLIENTS);
    for _ in 0..20 {
        inp.read(&mut em).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(em.out.len(), MAX_CLIENTS, "served beyond the limit");
    assert_eq!(stat(&set, "connected"), MAX_CLIENTS as u64);
    assert_eq!(stat(&set, "accept_paused"), 1);
    assert_eq!(stat(&set, "rejected"), 0);
    // Nobody was turned away: every client's connection is still open.
    for c in &held {
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let r = (&*c).read(&mut b);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{r:?}"
        );
    }
    held.drain(..100);
    pump(&mut inp, &mut em, |e| e.out.len() >= MAX_CLIENTS + EXTRA);
    let mut got: Vec<String> = em
        .out
        .iter()
        .filter_map(|r| get(r, "oob.prefix").map(str::to_string))
        .collect();
    got.sort_by_key(|p| p[1..].parse::<usize>().unwrap());
    let want: Vec<String> = (0..MAX_CLIENTS + EXTRA).map(|i| format!("c{i}")).collect();
    assert_eq!(got, want);
    pump(&mut inp, &mut em, |_| {
        stat(&set, "connected") == (MAX_CLIENTS + EXTRA - 100) as u64
    });
    assert_eq!(stat(&set, "accept_paused"), 1);
}

/// A client that connects, sends and closes before it is accepted is read
/// at accept: the limit counts only clients still there.
#[test]
fn closed_before_accept_is_read_at_accept() {
    let t = Tmp::new();
    let (mut inp, set) = open(&t);
    let mut em = collect();
    const N: usize = 100;
    for i in 0..N {
        let mut c = UnixStream::connect(t.sock()).unwrap();
        let p = format!("q{i}\0");
        c.write_all(&one(&ipv4_udp(), &[(opt::PREFIX, p.as_bytes())]))
            .unwrap();
    }
    // One read call: one listener event, every connection accepted, read
    // and closed in it.
    inp.read(&mut em).unwrap();
    assert_eq!(em.out.len(), N);
    assert_eq!(stat(&set, "connected"), 0);
    assert_eq!(stat(&set, "clients"), N as u64);
}

/// What clients sent before the stop is read by `stop`, not closed on.
#[test]
fn stop_reads_what_clients_sent() {
    let t = Tmp::new();
    let (mut inp, _set) = open(&t);
    let mut em = collect();
    let mut c = UnixStream::connect(t.sock()).unwrap();
    c.write_all(&one(&ipv4_udp(), &[(opt::PREFIX, b"last\0")]))
        .unwrap();
    inp.stop(&mut em);
    assert_eq!(em.out.len(), 1);
    assert_eq!(get(&em.out[0], "oob.prefix"), Some("last"));
}
