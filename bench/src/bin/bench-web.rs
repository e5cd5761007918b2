//! bench-web: what the WEB output costs per flow record, and its memory
//! after a flood of distinct hosts with its bounds set.
//!
//! In process, on one thread: flow records made beforehand are counted into
//! WEB's tallies (the work its `write` does under its lock), timed with the
//! thread's CPU clock; resident memory is read from /proc/self/status before
//! the tallies exist and after the last record. Two workloads: 1M records
//! over 10K hosts (a site's usual mix), and 1M records each between two
//! hosts never seen before (a scan, or a flood of spoofed sources). A
//! query of the top lists, as the page makes every 2 s, is timed after each.
//!
//! `bench-web [--records N] [--repeats N] [--hosts N] [--bins N]`

use rulogd_output::web::agg::{addr, Agg, Flow};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A deterministic generator (xorshift), so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn host(i: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i as u32)))
}

fn flows(n: usize, distinct_hosts: Option<u64>, seed: u64) -> Vec<Flow> {
    let mut r = Rng(seed);
    let t0 = 1_700_000_000u64;
    (0..n as u64)
        .map(|i| {
            let (s, d) = match distinct_hosts {
                Some(h) => (host(r.next() % h), host(1_000_000 + r.next() % h)),
                None => (host(2 * i), host(2 * i + 1)),
            };
            let t = t0 + i * 3600 / n as u64;
            Flow {
                src: addr(s),
                dst: addr(d),
                proto: if r.next() % 4 == 0 { 17 } else { 6 },
                dport: [80, 443, 53, 22, 8080][(r.next() % 5) as usize],
                orig: (40 + r.next() % 2000, 1 + r.next() % 20),
                reply: (40 + r.next() % 20000, 1 + r.next() % 20),
                start: t.saturating_sub(r.next() % 120),
                end: t,
                seq: 1,
                class: (r.next() % 4) as usize,
            }
        })
        .collect()
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!(
        "{:.1} / {:.1} / {:.1}",
        v[0],
        v[v.len() / 2],
        v[v.len() - 1]
    )
}

fn main() {
    let mut records = 1_000_000usize;
    let mut repeats = 3usize;
    let mut hosts = 1000usize;
    let mut bins = 360usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().and_then(|v| v.parse().ok()).expect("a number");
        match a.as_str() {
            "--records" => records = val(),
            "--repeats" => repeats = val(),
            "--hosts" => hosts = val(),
            "--bins" => bins = val(),
            _ => {
                eprintln!("usage: bench-web [--records N] [--repeats N] [--hosts N] [--bins N]");
                std::process::exit(2);
            }
        }
    }
    println!("bench-web: {records} flow records, hosts={hosts} services=256 bins={bins} bin_seconds=10, {repeats} repeats (min / median / max)");
    for (label, distinct) in [("10K hosts", Some(10_000u64)), ("all hosts distinct", None)] {
        let (mut ns, mut kib, mut query_ms, mut heap) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for rep in 0..repeats {
            let fl = flows(records, distinct, 0x9e37_79b9_7f4a_7c15 ^ rep as u64);
            let before = rss_kib();
            let mut agg = Agg::new(10, bins, hosts, 256);
            let c0 = thread_cpu();
            for f in &fl {
                agg.add(f);
            }
            let c1 = thread_cpu();
            kib.push((rss_kib().saturating_sub(before)) as f64);
            heap.push(agg.heap_bytes() as f64 / 1024.0);
            ns.push((c1 - c0).as_nanos() as f64 / records as f64);
            let q0 = thread_cpu();
            std::hint::black_box(agg.top(900, 10));
            std::hint::black_box(agg.series(900));
            query_ms.push((thread_cpu() - q0).as_secs_f64() * 1e3);
        }
        println!(
            "{label:>20}: CPU per record {} ns; tallies' heap {} KiB (RSS growth {} KiB); one page refresh (top + series) {} ms",
            stats(ns),
            stats(heap),
            stats(kib),
            stats(query_ms)
        );
    }
}
