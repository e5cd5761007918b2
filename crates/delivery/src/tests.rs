//! Writer-thread behaviour against a scripted transport: resending from the
//! start of a cut record, holding data while away, the pending cap, and the
//! shutdown deadline.

use super::*;
use rulogd_plugin::Service;
use std::io;
use std::sync::{Arc, Mutex};

/// What the scripted destination received and how it behaves.
#[derive(Default)]
struct Script {
    /// Whether `open` succeeds.
    up: bool,
    /// Bytes accepted per connection, in order.
    conns: Vec<Vec<u8>>,
    /// Accept only this many more bytes, then fail (a peer dying mid-write).
    budget: Option<usize>,
    opens: usize,
}

struct Mock {
    s: Arc<Mutex<Script>>,
    open: bool,
}

impl Transport for Mock {
    fn describe(&self) -> &str {
        "mock"
    }
    fn is_open(&self) -> bool {
        self.open
    }
    fn open(&mut self) -> io::Result<()> {
        let mut s = self.s.lock().unwrap_or_else(|e| e.into_inner());
        s.opens += 1;
        if !s.up {
            return Err(io::ErrorKind::ConnectionRefused.into());
        }
        s.conns.push(Vec::new());
        self.open = true;
        Ok(())
    }
    fn send(&mut self, b: &Batch, from: usize, _: &DeliveryStats) -> Result<(), SendError> {
        let mut s = self.s.lock().unwrap_or_else(|e| e.into_inner());
        let data = b.bytes_from(from);
        let n = s.budget.map_or(data.len(), |k| k.min(data.len()));
        if let Some(k) = s.budget.as_mut() {
            *k -= n;
        }
        if let Some(c) = s.conns.last_mut() {
            c.extend_from_slice(&data[..n]);
        }
        if n < data.len() {
            s.budget = None;
            s.up = false;
            let next = b.records_before(b.start_of(from) + n);
            return Err(SendError {
                next,
                error: io::ErrorKind::BrokenPipe.into(),
            });
        }
        Ok(())
    }
    fn close(&mut self) {
        self.open = false;
    }
}

fn start(s: &Arc<Mutex<Script>>, tweak: impl FnOnce(&mut DeliveryConfig)) -> Arc<Delivery> {
    let mut cfg = DeliveryConfig::new("t", "TEST", WhenFull::Block);
    cfg.batch_bytes = 64;
    cfg.close_timeout = Duration::from_millis(300);
    tweak(&mut cfg);
    let t = Mock {
        s: s.clone(),
        open: false,
    };
    match Delivery::start(&cfg, Box::new(t)) {
        Ok(d) => d,
        Err(e) => panic!("start: {e}"),
    }
}

fn line(p: &mut Producer, n: u32) {
    let b = p.batch().buf();
    b.extend_from_slice(format!("line {n:05}\n").as_bytes());
    p.commit().expect("commit");
}

fn lines_of(conn: &[u8]) -> (Vec<String>, usize) {
    let s = String::from_utf8_lossy(conn);
    let whole: Vec<String> = s
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(str::to_string)
        .collect();
    let torn = s.len() - whole.iter().map(String::len).sum::<usize>();
    (whole, torn)
}

fn script(f: impl FnOnce(&mut Script)) -> Arc<Mutex<Script>> {
    let s = Arc::new(Mutex::new(Script::default()));
    f(&mut s.lock().unwrap_or_else(|e| e.into_inner()));
    s
}

fn wait_for(cond: impl Fn() -> bool) {
    let t = std::time::Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_cut_record_is_resent_whole_on_the_next_connection() {
    // 11-byte lines; the peer dies 30 bytes in, inside the third line.
    let s = script(|s| {
        s.up = true;
        s.budget = Some(30);
    });
    let d = start(&s, |_| {});
    let mut p = d.producer(false);
    for n in 0..20 {
        line(&mut p, n);
    }
    p.flush().expect("flush");
    // Let the writer hit the failure, then bring the peer back.
    wait_for(|| !s.lock().map(|s| s.up).unwrap_or(true));
    s.lock().map(|mut s| s.up = true).expect("lock");
    drop(p);
    d.shutdown();
    let s = s.lock().expect("lock");
    assert_eq!(s.conns.len(), 2);
    let (first, torn) = lines_of(&s.conns[0]);
    assert_eq!((first.len(), torn), (2, 8));
    let (second, torn) = lines_of(&s.conns[1]);
    assert_eq!(torn, 0);
    assert_eq!(
        second[0], "line 00002\n",
        "resent from the start of the cut line"
    );
    assert_eq!(first.len() + second.len(), 20);
    assert_eq!(d.stats().records.get(), 20);
    assert_eq!(d.stats().reconnects.get(), 1);
    assert!(d.stats().write_errors.get() >= 1);
}

#[test]
fn data_is_held_while_away_and_capped_by_max_pending() {
    let s = script(|s| s.up = false);
    let d = start(&s, |c| {
        c.when_full = WhenFull::Drop;
        c.max_pending = 200;
    });
    let mut p = d.producer(false);
    for n in 0..100 {
        line(&mut p, n);
        if n % 5 == 4 {
            let _ = p.flush();
        }
    }
    let _ = p.flush();
    // The writer takes batches while it holds under 200 bytes, then drops.
    wait_for(|| d.stats().dropped_full.get() > 0 && d.stats().queue_depth.get() == 0);
    let held = d.stats().pending.get();
    assert!(held > 0 && held * 11 <= 200 + 64, "held {held}");
    s.lock().map(|mut s| s.up = true).expect("lock");
    drop(p);
    d.shutdown();
    let s = s.lock().expect("lock");
    let got: usize = s.conns.iter().map(|c| lines_of(c).0.len()).sum();
    assert_eq!(got as u64 + d.stats().dropped_full.get(), 100);
    assert_eq!(d.stats().pending.get(), 0);
}

#[test]
fn shutdown_gives_up_after_the_deadline_and_counts_the_loss() {
    let s = script(|s| s.up = false);
    let d = start(&s, |_| {});
    let mut p = d.producer(false);
    for n in 0..10 {
        line(&mut p, n);
    }
    p.flush().expect("flush");
    let t = std::time::Instant::now();
    d.shutdown();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(d.stats().dropped_shutdown.get(), 10);
    assert!(s.lock().map(|s| s.opens >= 2).unwrap_or(false), "retried");
    // A second shutdown is harmless; later writes report the closed queue.
    d.shutdown();
    line(&mut p, 99);
    assert!(matches!(p.flush(), Err(rulogd_plugin::OutputError::Closed)));
}

#[test]
fn block_policy_pushes_back_when_away_and_max_pending_is_reached() {
    let s = script(|s| s.up = false);
    let d = start(&s, |c| {
        c.queue_size = 2;
        c.max_pending = 0;
    });
    let d2 = d.clone();
    let producer = std::thread::spawn(move || {
        let mut p = d2.producer(true);
        for n in 0..50 {
            line(&mut p, n);
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(!producer.is_finished(), "the input is held back");
    assert_eq!(d.stats().dropped_full.get(), 0);
    s.lock().map(|mut s| s.up = true).expect("lock");
    producer.join().expect("producer");
    d.shutdown();
    let s = s.lock().expect("lock");
    let got: Vec<String> = s.conns.iter().flat_map(|c| lines_of(c).0).collect();
    let want: Vec<String> = (0..50).map(|n| format!("line {n:05}\n")).collect();
    assert_eq!(got, want);
}

#[test]
fn reopen_is_ordered_with_the_data() {
    let s = script(|s| s.up = true);
    let d = start(&s, |_| {});
    let mut p = d.producer(true);
    line(&mut p, 0);
    line(&mut p, 1);
    d.reopen();
    line(&mut p, 2);
    d.shutdown();
    let s = s.lock().expect("lock");
    assert_eq!(s.conns.len(), 2);
    assert_eq!(lines_of(&s.conns[0]).0, ["line 00000\n", "line 00001\n"]);
    assert_eq!(lines_of(&s.conns[1]).0, ["line 00002\n"]);
    assert_eq!(d.stats().reconnects.get(), 1);
}

#[test]
fn a_failing_disk_is_retried_with_backoff_not_in_a_spin() {
    // /dev/full opens fine and fails every write with ENOSPC.
    let mut cfg = DeliveryConfig::new("full", "TEST", WhenFull::Block);
    cfg.close_timeout = Duration::from_millis(400);
    let t = FileTransport::opened("/dev/full").expect("open /dev/full");
    let d = Delivery::start(&cfg, Box::new(t)).expect("start");
    let mut p = d.producer(true);
    line(&mut p, 0);
    std::thread::sleep(Duration::from_millis(300));
    d.shutdown();
    // 100 + 200 + 400 ms of backoff fit about four attempts in 700 ms.
    let errors = d.stats().write_errors.get();
    assert!((1..=10).contains(&errors), "{errors} write errors");
    assert_eq!(d.stats().dropped_shutdown.get(), 1);
    assert_eq!(d.stats().records.get(), 0);
}

#[test]
fn the_open_hook_runs_on_every_file_opened_before_data() {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("rulogd-openhook-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("out");
    // A header only into an empty file, as PCAP does.
    let hook: OpenHook = Box::new(|f: &mut std::fs::File| {
        if f.metadata()?.len() == 0 {
            f.write_all(b"HEADER\n")?;
        }
        Ok(())
    });
    let mut t = FileTransport::new(&path).on_open(hook);
    t.open().expect("open");
    let cfg = DeliveryConfig::new("hook", "TEST", WhenFull::Block);
    let d = Delivery::start(&cfg, Box::new(t)).expect("start");
    let mut p = d.producer(true);
    line(&mut p, 0);
    // Reopening the same file: no second header.
    d.reopen();
    line(&mut p, 1);
    wait_for(|| d.stats().records.get() == 2);
    // Moved away (logrotate): the new file gets its own header.
    std::fs::rename(&path, dir.join("out.1")).expect("rename");
    d.reopen();
    line(&mut p, 2);
    d.shutdown();
    let old = std::fs::read_to_string(dir.join("out.1")).expect("old");
    let new = std::fs::read_to_string(&path).expect("new");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(old, "HEADER\nline 00000\nline 00001\n");
    assert_eq!(new, "HEADER\nline 00002\n");
    assert_eq!(d.stats().reconnects.get(), 2);
}
