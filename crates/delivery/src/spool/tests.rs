//! The spool against a VecDeque model, across reopen (restart) and torn
//! tails (crash), and a delivery with a spool against a scripted transport.

use super::*;
use crate::{Delivery, DeliveryConfig, DeliveryStats, SendError, Transport, WhenFull};
use rulogd_plugin::Service;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn tmp(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("rulogd-spool-{tag}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    p
}

fn cfg(dir: &Path, max: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: max,
        retry_max: Duration::from_millis(200),
    }
}

fn batch(recs: &[Vec<u8>]) -> Batch {
    let mut b = Batch::with_capacity(64);
    for r in recs {
        b.buf().extend_from_slice(r);
        b.commit();
    }
    b
}

fn records(b: &Batch) -> Vec<Vec<u8>> {
    (0..b.records()).map(|i| b.record(i).to_vec()).collect()
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn behaves_like_a_fifo_across_restarts_and_torn_tails() {
    for seed in 1..=12u64 {
        let dir = tmp("model");
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut sp = Spool::open_segmented(&cfg(&dir, u64::MAX), 700).expect("open");
        // The model: committed-but-unread batches, in order, and how many of
        // them the spool has handed out without a commit.
        let mut model: VecDeque<Vec<Vec<u8>>> = VecDeque::new();
        let mut read = 0usize;
        let mut next_id = 0u32;
        for _ in 0..400 {
            match rng.below(10) {
                0..=3 => {
                    let n = 1 + rng.below(5) as usize;
                    let recs: Vec<Vec<u8>> = (0..n)
                        .map(|_| {
                            next_id += 1;
                            let len = rng.below(90) as usize;
                            let mut r = next_id.to_le_bytes().to_vec();
                            r.extend((0..len).map(|i| (i as u8) ^ (next_id as u8)));
                            r
                        })
                        .collect();
                    sp.append(&batch(&recs), 0).expect("append");
                    model.push_back(recs);
                }
                4..=6 => {
                    let mut b = Batch::default();
                    let got = sp.read_next(&mut b).expect("read");
                    assert_eq!(got, read < model.len(), "seed {seed}");
                    if got {
                        assert_eq!(records(&b), model[read], "seed {seed}");
                        read += 1;
                    }
                }
                7 => {
                    sp.commit().expect("commit");
                    model.drain(..read);
                    read = 0;
                }
                8 => {
                    sp.rewind();
                    read = 0;
                }
                _ => {
                    // Restart: what was read but not committed comes again.
                    drop(sp);
                    sp = Spool::open_segmented(&cfg(&dir, u64::MAX), 700).expect("reopen");
                    read = 0;
                }
            }
            let recs: usize = model.iter().map(Vec::len).sum();
            assert_eq!(sp.records(), recs as u64, "seed {seed}");
            assert_eq!(sp.is_empty(), model.is_empty(), "seed {seed}");
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_frame_cut_by_a_crash_is_dropped_and_the_rest_kept() {
    let dir = tmp("torn");
    let mut sp = Spool::open(&cfg(&dir, u64::MAX)).expect("open");
    sp.append(&batch(&[b"one".to_vec(), b"two".to_vec()]), 0)
        .expect("append");
    sp.append(&batch(&[b"three".to_vec()]), 0).expect("append");
    drop(sp);
    let seg = fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("segment");
    let len = fs::metadata(&seg).expect("meta").len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("seg")
        .set_len(len - 2)
        .expect("cut");
    let mut sp = Spool::open(&cfg(&dir, u64::MAX)).expect("reopen");
    assert_eq!(sp.records(), 2);
    let mut b = Batch::default();
    assert!(sp.read_next(&mut b).expect("read"));
    assert_eq!(records(&b), [b"one".to_vec(), b"two".to_vec()]);
    assert!(!sp.read_next(&mut b).expect("read"));
    // Appending after the cut works and is read in order.
    sp.append(&batch(&[b"four".to_vec()]), 0).expect("append");
    assert!(sp.read_next(&mut b).expect("read"));
    assert_eq!(records(&b), [b"four".to_vec()]);
    sp.commit().expect("commit");
    assert!(sp.is_empty());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn appending_from_a_record_keeps_only_the_tail() {
    let dir = tmp("from");
    let mut sp = Spool::open(&cfg(&dir, u64::MAX)).expect("open");
    sp.append(&batch(&[b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]), 1)
        .expect("append");
    let mut b = Batch::default();
    assert!(sp.read_next(&mut b).expect("read"));
    assert_eq!(records(&b), [b"bb".to_vec(), b"ccc".to_vec()]);
    let _ = fs::remove_dir_all(&dir);
}

/// A destination that is up or down, recording what it took.
#[derive(Default)]
struct Dest {
    up: bool,
    got: Vec<Vec<u8>>,
}

struct Mock(Arc<Mutex<Dest>>, bool);

impl Transport for Mock {
    fn describe(&self) -> &str {
        "mock"
    }
    fn is_open(&self) -> bool {
        self.1
    }
    fn open(&mut self) -> io::Result<()> {
        if self.0.lock().expect("lock").up {
            self.1 = true;
            Ok(())
        } else {
            Err(io::ErrorKind::ConnectionRefused.into())
        }
    }
    fn send(&mut self, b: &Batch, from: usize, _: &DeliveryStats) -> Result<(), SendError> {
        let mut d = self.0.lock().expect("lock");
        if !d.up {
            return Err(SendError {
                next: from,
                error: io::ErrorKind::BrokenPipe.into(),
            });
        }
        for i in from..b.records() {
            d.got.push(b.record(i).to_vec());
        }
        Ok(())
    }
    fn close(&mut self) {
        self.1 = false;
    }
}

fn start(dest: &Arc<Mutex<Dest>>, dir: &Path, max: u64, wf: WhenFull) -> Arc<Delivery> {
    let mut c = DeliveryConfig::new("sp", "TEST", wf);
    c.batch_bytes = 64;
    c.queue_size = 2;
    c.close_timeout = Duration::from_secs(2);
    c.spool = Some(cfg(dir, max));
    Delivery::start(&c, Box::new(Mock(dest.clone(), false))).expect("start")
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn line(i: usize) -> Vec<u8> {
    format!("rec {i:06}\n").into_bytes()
}

fn expected(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(line).collect()
}

#[test]
fn an_outage_goes_to_disk_and_comes_back_in_order() {
    let dir = tmp("outage");
    let dest = Arc::new(Mutex::new(Dest {
        up: true,
        got: Vec::new(),
    }));
    let d = start(&dest, &dir, u64::MAX, WhenFull::Block);
    let mut p = d.producer(false);
    let mut n = 0;
    for _ in 0..300 {
        p.batch().buf().extend_from_slice(&line(n));
        p.commit().expect("commit");
        n += 1;
    }
    p.flush().expect("flush");
    dest.lock().expect("lock").up = false;
    for _ in 0..3000 {
        p.batch().buf().extend_from_slice(&line(n));
        p.commit().expect("commit");
        n += 1;
    }
    p.flush().expect("flush");
    wait_for("spooling", || d.stats().pending.get() > 2000);
    dest.lock().expect("lock").up = true;
    for _ in 0..300 {
        p.batch().buf().extend_from_slice(&line(n));
        p.commit().expect("commit");
        n += 1;
    }
    p.flush().expect("flush");
    wait_for("delivery", || dest.lock().expect("lock").got.len() == n);
    drop(p);
    d.shutdown();
    assert_eq!(dest.lock().expect("lock").got, expected(n));
    assert_eq!(d.stats().dropped_full.get(), 0);
    assert!(d.stats().set.counter("spooled").get() > 0);
    assert!(Spool::open(&cfg(&dir, u64::MAX)).expect("open").is_empty());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn records_spooled_at_shutdown_are_delivered_by_the_next_start() {
    let dir = tmp("restart");
    let dest = Arc::new(Mutex::new(Dest::default()));
    let d = start(&dest, &dir, u64::MAX, WhenFull::Block);
    let mut p = d.producer(false);
    for i in 0..500 {
        p.batch().buf().extend_from_slice(&line(i));
        p.commit().expect("commit");
    }
    drop(p);
    d.shutdown();
    assert!(dest.lock().expect("lock").got.is_empty());
    assert_eq!(d.stats().dropped_shutdown.get(), 0);
    assert_eq!(d.stats().dropped_full.get(), 0);
    {
        let mut sp = Spool::open(&cfg(&dir, u64::MAX)).expect("reopen");
        let mut all = Vec::new();
        let mut b = Batch::default();
        while sp.read_next(&mut b).expect("read") {
            all.extend(records(&b));
        }
        assert!(all == expected(500), "{}", summary(&all));
    }
    // The next start: the destination is up and gets everything first.
    dest.lock().expect("lock").up = true;
    let d = start(&dest, &dir, u64::MAX, WhenFull::Block);
    let mut p = d.producer(false);
    for i in 500..600 {
        p.batch().buf().extend_from_slice(&line(i));
        p.commit().expect("commit");
    }
    p.flush().expect("flush");
    wait_for("replay", || dest.lock().expect("lock").got.len() == 600);
    drop(p);
    d.shutdown();
    let got = dest.lock().expect("lock").got.clone();
    assert!(got == expected(600), "{}", summary(&got));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_full_spool_drops_and_counts_with_the_drop_policy() {
    let dir = tmp("full");
    let dest = Arc::new(Mutex::new(Dest::default()));
    let d = start(&dest, &dir, 4096, WhenFull::Drop);
    let mut p = d.producer(false);
    let mut dropped = 0;
    for i in 0..2000 {
        p.batch().buf().extend_from_slice(&line(i));
        if p.commit().is_err() {
            dropped += 1;
        }
    }
    let _ = p.flush();
    assert!(dropped > 0);
    assert!(d.stats().dropped_full.get() > 0);
    dest.lock().expect("lock").up = true;
    wait_for("drain", || {
        d.stats().pending.get() == 0 && d.stats().records.get() > 0
    });
    drop(p);
    d.shutdown();
    let got = dest.lock().expect("lock").got.clone();
    // What arrived is in order and without repeats.
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        got.len() as u64 + d.stats().dropped_full.get(),
        2000,
        "every record is delivered or counted"
    );
    let _ = fs::remove_dir_all(&dir);
}

fn summary(got: &[Vec<u8>]) -> String {
    got.iter()
        .map(|r| String::from_utf8_lossy(&r[4..10]).into_owned())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn crc32_is_the_ieee_checksum() {
    // The standard check value: a different CRC would reject every frame
    // spooled before an upgrade.
    assert_eq!(super::crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(super::crc32(b""), 0);
}

#[test]
fn a_replay_gathers_small_frames_into_one_batch_and_rewinds_them_together() {
    let dir = tmp("more");
    let mut sp = Spool::open_segmented(&cfg(&dir, u64::MAX), 700).expect("open");
    let all: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 10]).collect();
    for pair in all.chunks(2) {
        sp.append(&batch(pair), 0).expect("append");
    }
    let mut b = Batch::with_capacity(64);
    assert!(sp.read_next(&mut b).expect("read"));
    assert_eq!(b.records(), 2);
    sp.read_more(&mut b, 150);
    // Whole frames until 150 bytes are reached, across segment ends (700).
    assert_eq!(records(&b), all[..16].to_vec());
    sp.rewind();
    assert!(sp.read_next(&mut b).expect("read again"));
    sp.read_more(&mut b, usize::MAX);
    assert_eq!(records(&b), all);
    sp.commit().expect("commit");
    assert_eq!(sp.records(), 0);
    assert!(!sp.has_unread());
    let _ = fs::remove_dir_all(&dir);
}

/// The writer found the queue empty, then a producer queued batches and
/// spooled the next one before the writer looked at the spool: the queued
/// ones are older and go first. A race, so many short rounds on a queue of
/// one batch; the CI run that found it had this order wrong once.
#[test]
fn batches_queued_while_the_writer_turns_to_the_spool_go_first() {
    for round in 0..40 {
        let dir = tmp("race");
        let dest = Arc::new(Mutex::new(Dest {
            up: true,
            got: Vec::new(),
        }));
        let mut c = DeliveryConfig::new("sp", "TEST", WhenFull::Block);
        c.batch_bytes = 1;
        c.queue_size = 1;
        c.close_timeout = Duration::from_secs(2);
        c.spool = Some(cfg(&dir, u64::MAX));
        let d = Delivery::start(&c, Box::new(Mock(dest.clone(), false))).expect("start");
        let mut p = d.producer(false);
        let n = 2000;
        for i in 0..n {
            p.batch().buf().extend_from_slice(&line(i));
            p.commit().expect("commit");
        }
        p.flush().expect("flush");
        wait_for("delivery", || dest.lock().expect("lock").got.len() == n);
        drop(p);
        d.shutdown();
        let got = std::mem::take(&mut dest.lock().expect("lock").got);
        assert!(got == expected(n), "round {round}: out of order");
        let _ = fs::remove_dir_all(&dir);
    }
}
