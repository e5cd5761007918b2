//! File mode end to end: batching, shutdown, SIGHUP reopen after a rename
//! under concurrent writes, and instances sharing one writer.

mod common;

use rulogd_output::json::TsFormat;
use rulogd_plugin::{Output, Record, SharedRegistry};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn lines(p: &Path) -> Vec<String> {
    let s = std::fs::read_to_string(p).expect("read output");
    assert!(s.is_empty() || s.ends_with('\n'), "last line torn");
    s.lines().map(str::to_string).collect()
}

#[test]
fn shutdown_writes_everything_flushed_or_dropped() {
    let dir = common::temp_dir("shutdown");
    let file = dir.join("out.json");
    let reg = SharedRegistry::default();
    let mut out = common::build(
        &reg,
        "j",
        &[
            ("file", file.to_str().unwrap_or_default()),
            ("timestamp", "0"),
        ],
    );
    common::bind(&mut out, &common::seq_keys());
    let mut rec = Record::with_slots(2);
    for n in 0..10_000 {
        common::seq_record(&mut rec, n, 10);
        out.write(&rec).expect("write");
    }
    // No explicit flush: dropping the output hands its last batch over.
    drop(out);
    common::shutdown(&reg);
    let got = lines(&file);
    assert_eq!(got.len(), 10_000);
    for (i, l) in got.iter().enumerate() {
        assert_eq!(common::seq_of(l), i as u32);
    }
    assert_eq!(
        got[0],
        r#"{"dvc": "Netfilter", "seq": 0, "pad": "xxxxxxxxxx"}"#
    );
    assert_eq!(common::counter(&reg, "records"), 10_000);
    assert!(common::counter(&reg, "batches") >= 2, "batched in 64 KiB");
    assert_eq!(common::counter(&reg, "dropped_full"), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sync_hands_every_line_over_at_once() {
    let dir = common::temp_dir("sync");
    let file = dir.join("out.json");
    let reg = SharedRegistry::default();
    let mut out = common::build(
        &reg,
        "j",
        &[
            ("file", file.to_str().unwrap_or_default()),
            ("sync", "1"),
            ("timestamp_format", "rfc3339"),
        ],
    );
    common::bind(&mut out, &common::seq_keys());
    let mut rec = Record::with_slots(2);
    common::seq_record(&mut rec, 1, 0);
    out.write(&rec).expect("write");
    // Without any flush the line reaches the file promptly.
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen = lines(&file);
        if !seen.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(seen.len(), 1);
    // The current time in UTC, with microseconds.
    let l = &seen[0];
    assert!(l.starts_with(r#"{"timestamp": "20"#), "{l}");
    assert_eq!(&l[41..45], "Z\", ", "{l}");
    assert_eq!(TsFormat::parse("rfc3339"), Some(TsFormat::Rfc3339));
    drop(out);
    common::shutdown(&reg);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn reopen_after_rename_loses_no_line_under_concurrent_writes() {
    const N: u32 = 100_000;
    const ROTATIONS: usize = 6;
    let dir = common::temp_dir("reopen");
    let file = dir.join("out.json");
    let reg = Arc::new(SharedRegistry::default());
    let mut out = common::build(
        &reg,
        "j",
        &[
            ("file", file.to_str().unwrap_or_default()),
            ("timestamp", "0"),
        ],
    );
    common::bind(&mut out, &common::seq_keys());
    let service = common::service(&reg);
    let done = Arc::new(AtomicBool::new(false));

    let rotated_all = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        let rotated_all = rotated_all.clone();
        std::thread::spawn(move || {
            let mut rec = Record::with_slots(2);
            for n in 0..N {
                common::seq_record(&mut rec, n, 40);
                out.write(&rec).expect("write");
                if n.is_multiple_of(97) {
                    // An input going idle now and then: many small batches.
                    out.flush().expect("flush");
                    if !rotated_all.load(Ordering::Acquire) {
                        // An optimised build writes everything within the
                        // first rotation's sleep: keep the writes going
                        // until every rotation has happened.
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            }
            out.flush().expect("flush");
            done.store(true, Ordering::Release);
        })
    };
    let mut rotated = Vec::new();
    for i in 0..ROTATIONS {
        std::thread::sleep(Duration::from_millis(15));
        let to = dir.join(format!("out.json.{i}"));
        std::fs::rename(&file, &to).expect("rename");
        service.reopen();
        rotated.push(to);
    }
    rotated_all.store(true, Ordering::Release);
    writer.join().expect("writer thread");
    assert!(done.load(Ordering::Acquire));
    service.shutdown();

    // Every line once, whole, and in order across the files in rotation
    // order: each reopen split the stream exactly between two lines.
    rotated.push(file);
    let mut next = 0u32;
    let mut non_empty = 0;
    for f in &rotated {
        let ls = lines(f);
        non_empty += usize::from(!ls.is_empty());
        for l in ls {
            assert_eq!(common::seq_of(&l), next, "in {}", f.display());
            next += 1;
        }
    }
    assert_eq!(next, N);
    assert!(non_empty >= 2, "the rotations split the output");
    assert_eq!(common::counter(&reg, "reconnects"), ROTATIONS as u64);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn instances_with_one_id_share_one_writer() {
    let dir = common::temp_dir("shared");
    let file = dir.join("out.json");
    let reg = SharedRegistry::default();
    let pairs = [
        ("file", file.to_str().unwrap_or_default()),
        ("timestamp", "0"),
    ];
    let mut a = common::build(&reg, "same", &pairs);
    let mut b = common::build(&reg, "same", &pairs);
    assert_eq!(reg.services().len(), 1);
    assert_eq!(reg.stats().len(), 1);
    assert_eq!(reg.stats()[0].name, "same (JSON)");
    common::bind(&mut a, &common::seq_keys());
    common::bind(&mut b, &common::seq_keys());
    let ta = std::thread::spawn(move || {
        let mut rec = Record::with_slots(2);
        for n in 0..20_000 {
            common::seq_record(&mut rec, n * 2, 30);
            a.write(&rec).expect("write a");
        }
        a.flush().expect("flush a");
    });
    let mut rec = Record::with_slots(2);
    for n in 0..20_000 {
        common::seq_record(&mut rec, n * 2 + 1, 30);
        b.write(&rec).expect("write b");
    }
    b.flush().expect("flush b");
    ta.join().expect("thread a");
    common::shutdown(&reg);
    let mut seqs: Vec<u32> = lines(&file).iter().map(|l| common::seq_of(l)).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..40_000).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unopenable_file_fails_the_build() {
    let o = common::options(&[("file", "/nonexistent-dir/x/ulogd.json")]);
    let reg = SharedRegistry::default();
    let ctx = rulogd_plugin::BuildCtx {
        instance: "bad",
        info: &rulogd_output::json::INFO,
        options: &o,
        shared: &reg,
    };
    match rulogd_output::json::Json::new(&ctx) {
        Ok(_) => panic!("built with an unopenable file"),
        Err(e) => assert!(e.to_string().contains("can't open JSON log file"), "{e}"),
    }
    assert!(reg.services().is_empty());
}
