//! Network modes end to end: a TCP peer that starts late and one that closes
//! and comes back mid-stream, UDP datagrams, a unix socket peer, and the drop
//! policy when the peer stalls.

mod common;

use rulogd_plugin::{Output, OutputError, Record, SharedRegistry};
use std::io::{BufRead, BufReader, Read};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Reads complete lines until EOF; a fragment without newline is returned
/// apart (a torn tail the sender must have resent elsewhere).
fn read_lines<R: Read>(r: R) -> (Vec<String>, String) {
    let mut r = BufReader::new(r);
    let mut out = Vec::new();
    loop {
        let mut l = String::new();
        match r.read_line(&mut l) {
            Ok(0) => return (out, String::new()),
            Ok(_) if l.ends_with('\n') => {
                l.pop();
                out.push(l);
            }
            Ok(_) => return (out, l),
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn accept(l: &TcpListener) -> TcpStream {
    let (s, _) = l.accept().expect("accept");
    s
}

#[test]
fn tcp_peer_late_and_restarted_gets_every_line_exactly_once() {
    let port = free_port();
    let reg = Arc::new(SharedRegistry::default());
    let port_s = port.to_string();
    let mut out = common::build(
        &reg,
        "tcp1",
        &[
            ("mode", "tcp"),
            ("host", "127.0.0.1"),
            ("port", &port_s),
            ("timestamp", "0"),
            ("when_full", "block"),
        ],
    );
    common::bind(&mut out, &common::seq_keys());

    // The producer starts before any peer exists and keeps going across the
    // restart until told to stop, flushing often so many small batches are
    // in flight.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rec = Record::with_slots(2);
            let mut n = 0u32;
            while !stop.load(Ordering::Acquire) {
                common::seq_record(&mut rec, n, 100);
                out.write(&rec).expect("write");
                n += 1;
                if n.is_multiple_of(10) {
                    out.flush().expect("flush");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            out.flush().expect("flush");
            n
        })
    };

    std::thread::sleep(Duration::from_millis(300));
    let l1 = TcpListener::bind(("127.0.0.1", port)).expect("bind first peer");
    let c1 = accept(&l1);
    // Read part of the stream, then leave: stop listening, half-close, and
    // read what is still coming until the sender closes its side.
    let mut first = Vec::new();
    let mut r = BufReader::new(c1.try_clone().expect("clone"));
    while first.len() < 500 {
        let mut s = String::new();
        if r.read_line(&mut s).expect("read") == 0 {
            break;
        }
        assert!(s.ends_with('\n'), "torn line on first connection");
        s.pop();
        first.push(s);
    }
    drop(l1);
    c1.shutdown(Shutdown::Write).expect("half-close");
    let (rest, torn1) = read_lines(r);
    first.extend(rest);
    assert_eq!(torn1, "", "the graceful close must not cut a line");

    std::thread::sleep(Duration::from_millis(400));
    let l2 = TcpListener::bind(("127.0.0.1", port)).expect("bind second peer");
    let c2 = accept(&l2);
    let reader = std::thread::spawn(move || read_lines(c2));
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Release);
    let n = producer.join().expect("producer");
    common::shutdown(&reg);
    let (second, torn2) = reader.join().expect("reader");
    assert_eq!(torn2, "");

    assert!(first.len() >= 500 && !second.is_empty());
    let mut seqs: Vec<u32> = first
        .iter()
        .chain(&second)
        .map(|l| common::seq_of(l))
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..n).collect::<Vec<_>>(), "every line exactly once");
    assert_eq!(common::counter(&reg, "records"), u64::from(n));
    assert_eq!(common::counter(&reg, "dropped_full"), 0);
    assert!(common::counter(&reg, "reconnects") >= 1);
    assert!(
        common::counter(&reg, "write_errors") >= 2,
        "refused at start and after"
    );
}

#[test]
fn tcp_peer_that_vanishes_abruptly_gets_no_torn_or_repeated_line() {
    const N: u32 = 4000;
    let port = free_port();
    let reg = SharedRegistry::default();
    let port_s = port.to_string();
    let l1 = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let mut out = common::build(
        &reg,
        "tcp2",
        &[
            ("mode", "tcp"),
            ("port", &port_s),
            ("timestamp", "0"),
            ("when_full", "block"),
        ],
    );
    common::bind(&mut out, &common::seq_keys());
    let peer = std::thread::spawn(move || {
        // First connection: read a little, then close without reading the
        // rest (lines in flight are lost, as with any TCP peer that dies).
        let c1 = accept(&l1);
        let mut r = BufReader::new(c1);
        let mut first = Vec::new();
        for _ in 0..200 {
            let mut s = String::new();
            if r.read_line(&mut s).expect("read") == 0 {
                break;
            }
            first.push(s.trim_end().to_string());
        }
        drop(r);
        // Same listener: the reconnect lands here.
        let c2 = accept(&l1);
        let (second, torn) = read_lines(c2);
        (first, second, torn)
    });
    let mut rec = Record::with_slots(2);
    for n in 0..N {
        common::seq_record(&mut rec, n, 200);
        out.write(&rec).expect("write");
        if n.is_multiple_of(20) {
            out.flush().expect("flush");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    out.flush().expect("flush");
    drop(out);
    common::shutdown(&reg);
    let (first, second, torn) = peer.join().expect("peer");
    assert_eq!(torn, "");
    let mut seen = std::collections::HashSet::new();
    for l in first.iter().chain(&second) {
        assert!(seen.insert(common::seq_of(l)), "line {l} twice");
    }
    // The tail of the stream after the reconnect is complete.
    assert!(seen.contains(&(N - 1)));
    let lost = u64::from(N) - seen.len() as u64;
    assert!(lost < u64::from(N) / 2, "lost {lost}");
}

#[test]
fn udp_sends_one_datagram_per_line() {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = sock.local_addr().expect("addr").port().to_string();
    let reg = SharedRegistry::default();
    let mut out = common::build(
        &reg,
        "udp1",
        &[
            ("mode", "udp"),
            ("port", &port),
            ("timestamp", "0"),
            ("eventv1", "1"),
        ],
    );
    common::bind(&mut out, &common::seq_keys());
    let mut rec = Record::with_slots(2);
    for n in 0..100 {
        common::seq_record(&mut rec, n, 5);
        out.write(&rec).expect("write");
    }
    out.flush().expect("flush");
    let mut buf = [0u8; 2048];
    for n in 0..100 {
        let k = sock.recv(&mut buf).expect("datagram");
        let d = std::str::from_utf8(&buf[..k]).expect("utf8");
        assert!(d.ends_with("}\n") && d.matches('\n').count() == 1, "{d:?}");
        assert!(
            d.starts_with(r#"{"@version": 1, "dvc": "Netfilter""#),
            "{d}"
        );
        assert_eq!(common::seq_of(d.trim_end()), n);
    }
    drop(out);
    common::shutdown(&reg);
    assert_eq!(common::counter(&reg, "records"), 100);
}

#[test]
fn unix_stream_peer_and_late_start() {
    let dir = common::temp_dir("unix");
    let path = dir.join("sock");
    let reg = SharedRegistry::default();
    let mut out = common::build(
        &reg,
        "ux",
        &[
            ("mode", "UNIX"),
            ("file", path.to_str().unwrap_or_default()),
            ("timestamp", "0"),
        ],
    );
    common::bind(&mut out, &common::seq_keys());
    let mut rec = Record::with_slots(2);
    // Written while nothing listens: held, then delivered.
    for n in 0..50 {
        common::seq_record(&mut rec, n, 3);
        out.write(&rec).expect("write");
    }
    out.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(150));
    let l = UnixListener::bind(&path).expect("bind unix");
    let reader = std::thread::spawn(move || {
        let (c, _) = l.accept().expect("accept");
        read_lines(c)
    });
    for n in 50..100 {
        common::seq_record(&mut rec, n, 3);
        out.write(&rec).expect("write");
    }
    out.flush().expect("flush");
    drop(out);
    common::shutdown(&reg);
    let (got, torn) = reader.join().expect("reader");
    assert_eq!(torn, "");
    let seqs: Vec<u32> = got.iter().map(|l| common::seq_of(l)).collect();
    assert_eq!(seqs, (0..100).collect::<Vec<_>>());
    assert!(common::counter(&reg, "pending") == 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn drop_policy_counts_what_a_stalled_peer_costs() {
    let dir = common::temp_dir("drop");
    let path = dir.join("sock");
    let l = UnixListener::bind(&path).expect("bind unix");
    let reg = SharedRegistry::default();
    let mut out = common::build(
        &reg,
        "dr",
        &[
            ("mode", "unix"),
            ("file", path.to_str().unwrap_or_default()),
            ("timestamp", "0"),
            ("queue_size", "1"),
            ("sync", "1"),
        ],
    );
    common::bind(&mut out, &common::seq_keys());
    // The peer accepts but does not read: socket buffers fill, the writer
    // blocks, the queue fills, and records are dropped, not waited for.
    let (conn, _) = l.accept().expect("accept");
    let mut rec = Record::with_slots(2);
    let mut written = 0u32;
    let mut refused = 0u32;
    let start = Instant::now();
    while refused == 0 && start.elapsed() < Duration::from_secs(20) {
        common::seq_record(&mut rec, written, 1000);
        match out.write(&rec) {
            Ok(()) => {}
            Err(OutputError::QueueFull) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
        written += 1;
    }
    assert!(refused > 0, "never dropped");
    let dropped = common::counter(&reg, "dropped_full");
    assert!(dropped >= u64::from(refused));
    // Now drain: everything not dropped arrives.
    let reader = std::thread::spawn(move || read_lines(conn));
    drop(out);
    common::shutdown(&reg);
    let (got, torn) = reader.join().expect("reader");
    assert_eq!(torn, "");
    assert_eq!(got.len() as u64 + dropped, u64::from(written));
    let _ = std::fs::remove_dir_all(dir);
}
