use super::*;
use std::io::Read;
use std::net::{TcpListener, TcpStream};

const S: Duration = Duration::from_secs(1);

fn cfg(keep: u64, max_bytes: usize, acked_keep: Option<u64>) -> WindowConfig {
    WindowConfig {
        keep: Duration::from_secs(keep),
        max_bytes,
        acked_keep: acked_keep.map(Duration::from_secs),
    }
}

/// A record of two Graphite lines, `n` (a digit) in both, 20 bytes in all.
fn rec(n: u8) -> Vec<u8> {
    let r = format!("a.{n}.p {n} 1\na.{n}.b {n} 1\n").into_bytes();
    assert_eq!(r.len(), 20);
    r
}

fn held(w: &ResendWindow) -> Vec<u8> {
    let (a, b) = w.bytes();
    [a, b].concat()
}

#[test]
fn time_bound_drops_only_what_is_old_enough() {
    let t0 = Instant::now();
    let mut w = ResendWindow::new(cfg(60, 1 << 20, None));
    w.push(&rec(1), t0);
    w.push(&rec(2), t0 + 10 * S);
    assert_eq!(w.held_lines(), 4);
    w.expire(t0 + 59 * S);
    assert_eq!(w.held_lines(), 4);
    w.expire(t0 + 60 * S);
    assert_eq!((w.held_lines(), held(&w)), (2, rec(2)));
    w.expire(t0 + 70 * S);
    assert!(w.is_empty() && w.held_bytes() == 0);
}

#[test]
fn byte_bound_pushes_out_the_oldest_and_counts_them() {
    let t0 = Instant::now();
    let mut w = ResendWindow::new(cfg(60, 50, None));
    assert_eq!(w.push(&rec(1), t0), 0);
    assert_eq!(w.push(&rec(2), t0), 0);
    // 60 > 50: the oldest record (two datapoints) goes.
    assert_eq!(w.push(&rec(3), t0), 2);
    assert_eq!(held(&w), [rec(2), rec(3)].concat());
    // A record larger than the whole window is not held at all.
    let mut small = ResendWindow::new(cfg(60, 10, None));
    assert_eq!(small.push(&rec(4), t0), 2);
    assert!(small.is_empty());
}

#[test]
fn replay_is_in_send_order_across_the_ring() {
    let t0 = Instant::now();
    let mut w = ResendWindow::new(cfg(60, 45, None));
    // Pushing and popping moves the ring's start, so the bytes come in two
    // slices; together they must be oldest first.
    for n in 1..=7 {
        w.push(&rec(n), t0 + u32::from(n) * S);
    }
    assert_eq!(held(&w), [rec(6), rec(7)].concat());
    w.connected();
    w.replayed(t0 + 8 * S);
    // Replayed: the time starts again, so nothing is old at 8 + 59 s.
    w.expire(t0 + 67 * S);
    assert_eq!(w.held_lines(), 4);
    w.expire(t0 + 68 * S);
    assert!(w.is_empty());
}

#[test]
fn acked_datapoints_leave_early_unacked_ones_stay() {
    let t0 = Instant::now();
    let mut w = ResendWindow::new(cfg(60, 1 << 20, Some(10)));
    w.connected();
    for n in 1..=3 {
        w.push(&rec(n), t0);
    }
    // 60 bytes written, 25 still in the send queue: only the first record
    // (bytes 0..20) is wholly ACKed.
    w.observe(Some(25), t0 + S);
    w.expire(t0 + 10 * S);
    assert_eq!(w.held_lines(), 6, "ACKed 9 s ago: kept");
    w.expire(t0 + 11 * S);
    assert_eq!(held(&w), [rec(2), rec(3)].concat());
    // The kernel says the rest is unACKed: kept past the time bound too.
    w.observe(Some(40), t0 + 100 * S);
    w.expire(t0 + 100 * S);
    assert_eq!(w.held_lines(), 4);
    // ACKed at last, and older than the time bound: gone at once.
    w.observe(Some(0), t0 + 101 * S);
    w.expire(t0 + 101 * S);
    assert!(w.is_empty());
}

#[test]
fn without_an_answer_from_the_kernel_only_time_counts() {
    let t0 = Instant::now();
    let mut w = ResendWindow::new(cfg(60, 1 << 20, Some(1)));
    w.connected();
    w.push(&rec(1), t0);
    w.observe(Some(20), t0);
    w.observe(None, t0 + S);
    w.expire(t0 + 59 * S);
    assert_eq!(w.held_lines(), 2);
    w.expire(t0 + 60 * S);
    assert!(w.is_empty());
}

#[test]
fn acks_ignored_when_acked_keep_is_off() {
    let t0 = Instant::now();
    let mut w = ResendWindow::new(cfg(60, 1 << 20, None));
    w.connected();
    w.push(&rec(1), t0);
    w.observe(Some(0), t0);
    w.expire(t0 + 59 * S);
    assert_eq!(w.held_lines(), 2);
    w.expire(t0 + 60 * S);
    assert!(w.is_empty());
}

#[test]
fn offsets_start_again_on_a_new_connection() {
    let t0 = Instant::now();
    let mut w = ResendWindow::new(cfg(60, 1 << 20, Some(0)));
    w.connected();
    w.push(&rec(1), t0);
    w.push(&rec(2), t0);
    // A new connection: the replay is its first 40 bytes, then one new record.
    w.connected();
    w.replayed(t0 + S);
    w.push(&rec(3), t0 + S);
    // 60 written on it, 20 unACKed: the two replayed records are ACKed.
    w.observe(Some(20), t0 + 2 * S);
    w.expire(t0 + 2 * S);
    assert_eq!(held(&w), rec(3));
}

fn batch(recs: &[Vec<u8>]) -> Batch {
    let mut b = Batch::with_capacity(256);
    for r in recs {
        b.buf().extend_from_slice(r);
        b.commit();
    }
    b
}

fn read_until(s: &mut TcpStream, want: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < want {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Over real sockets: after the peer drops the connection, the new one
/// carries the window first, then what the writer resends, in order.
#[test]
fn a_new_connection_gets_the_window_before_anything_new() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let stats = WindowStats::new("gr1");
    let mut t = ResendTransport::new(
        StreamTransport::tcp("127.0.0.1", &port),
        cfg(60, 1 << 20, Some(60)),
        stats.clone(),
        "gr1",
    );
    let st = DeliveryStats::new("gr1 (GRAPHITE)");
    t.open().unwrap();
    let (mut c1, _) = l.accept().unwrap();
    t.send(&batch(&[rec(1), rec(2)]), 0, &st).unwrap();
    assert_eq!(read_until(&mut c1, 40), [rec(1), rec(2)].concat());
    assert_eq!(stats.held.get(), 4);
    // The peer goes away; the next send notices before writing.
    drop(c1);
    let b = batch(&[rec(3)]);
    let e = (0..50)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            t.send(&b, 0, &st).err()
        })
        .expect("the send should see the closed peer");
    assert_eq!(e.next, 0);
    t.close();
    t.open().unwrap();
    let (mut c2, _) = l.accept().unwrap();
    t.send(&b, e.next, &st).unwrap();
    assert_eq!(
        read_until(&mut c2, 60),
        [rec(1), rec(2), rec(3)].concat(),
        "window first, then the record the failure interrupted"
    );
    assert_eq!(stats.resent.get(), 4);
    assert_eq!(stats.held.get(), 6);
    assert_eq!(stats.evicted.get(), 0);
}

/// SIOCOUTQ on a real TCP socket: zero once the peer's kernel has ACKed
/// everything, non-zero while its receive buffer is full.
#[test]
fn unacked_bytes_follow_the_peers_acks() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let mut t = StreamTransport::tcp("127.0.0.1", &port);
    assert_eq!(t.unacked_bytes(), None, "not connected");
    t.open().unwrap();
    let (mut c, _) = l.accept().unwrap();
    t.write_raw(b"x.y 1 100\n").unwrap();
    let settled = |t: &StreamTransport| {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let n = t.unacked_bytes().expect("TCP answers SIOCOUTQ");
            if n == 0 || Instant::now() > until {
                return n;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    assert_eq!(settled(&t), 0, "loopback ACKs at once");
    // The peer stops reading: once its receive buffer is full, what we
    // write stays unACKed in our send queue.
    let chunk = vec![b'z'; 64 * 1024];
    let mut stuck = 0;
    for _ in 0..256 {
        t.limit_send_time(Duration::from_millis(50));
        if t.write_raw(&chunk).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
        stuck = t.unacked_bytes().unwrap();
        if stuck > 0 {
            break;
        }
    }
    assert!(stuck > 0, "a peer that does not read leaves bytes unACKed");
    // Reading it all drains our queue again.
    let mut buf = vec![0u8; 1 << 16];
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while t.unacked_bytes().unwrap() > 0 && Instant::now() < until {
        let _ = c.read(&mut buf);
    }
    assert_eq!(t.unacked_bytes(), Some(0));
}
