//! What the page shows, kept in fixed time bins: traffic by direction,
//! and bounded tallies of hosts, services and conversations.
//!
//! Time is the records' own (flow end and start), so a replayed capture
//! file shows the traffic at the times it had. In the direction series a
//! record's counts are spread evenly over the seconds it covers: from the
//! flow's start for its first record, and for the later ones (active-timeout
//! updates, the end) over the mean period since the start, which is exact
//! for the periodic updates. The tallies (hosts, services, conversations)
//! count a record whole in the bin of its end, as Argus and nfdump do: one
//! ring write each instead of one per bin keeps the per-record cost low.
//! Counts older than the ring are dropped; nothing else is.

use super::topk::{Mini, Payload, TopK};
use rulogd_plugin::addr_text::{ipv4_text, ipv6_text, AddrBuf};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv6Addr};

/// The direction classes, in the order of [`Flow::class`].
pub const CLASSES: [&str; 5] = ["inbound", "outbound", "internal", "external", "unknown"];

/// The index in [`CLASSES`] of an ECS `network.direction` word.
pub fn class_of(word: &[u8]) -> usize {
    match word {
        b"inbound" | b"ingress" => 0,
        b"outbound" | b"egress" => 1,
        b"internal" => 2,
        b"external" => 3,
        _ => 4,
    }
}

/// An address as 16 bytes: IPv4 mapped into IPv6.
pub type Addr = [u8; 16];

/// The 16-byte form of `ip`.
pub fn addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// Text of a 16-byte address, IPv4 in dotted form, spelled as IP2STR
/// spells it (glibc's `inet_ntop`), so the page's hosts read as the same
/// text as the JSON records' addresses.
pub fn addr_text(a: &Addr) -> String {
    let mut buf: AddrBuf = [0; rulogd_plugin::addr_text::LEN];
    let text = match Ipv6Addr::from(*a).to_ipv4_mapped() {
        Some(v4) => ipv4_text(v4.octets(), &mut buf),
        None => ipv6_text(*a, &mut buf),
    };
    String::from_utf8_lossy(text).into_owned()
}

/// One flow record's facts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flow {
    /// Initiator.
    pub src: Addr,
    /// Responder.
    pub dst: Addr,
    /// IP protocol.
    pub proto: u8,
    /// The responder's port (0 without ports).
    pub dport: u16,
    /// Initiator → responder bytes and packets.
    pub orig: (u64, u64),
    /// Responder → initiator bytes and packets.
    pub reply: (u64, u64),
    /// First packet, seconds.
    pub start: u64,
    /// Last packet, seconds.
    pub end: u64,
    /// Record number within the flow (1 for the first; 0 if unknown).
    pub seq: u32,
    /// Index in [`CLASSES`].
    pub class: usize,
}

#[derive(Clone, Copy)]
struct Cell<const W: usize> {
    /// Bin number + 1; 0 is an empty cell.
    tag: u64,
    /// The ring's generation the cell was written in.
    gen: u32,
    v: [u64; W],
}

impl<const W: usize> Default for Cell<W> {
    fn default() -> Self {
        Cell {
            tag: 0,
            gen: 0,
            v: [0; W],
        }
    }
}

/// `W` counters per time bin for the last `n` bins.
pub struct Ring<const W: usize> {
    cells: Vec<Cell<W>>,
    /// Cells of an older generation are empty: a reset is O(1), which a
    /// tally replacing an entry on every record of a flood needs.
    gen: u32,
}

impl<const W: usize> Ring<W> {
    /// A ring of `n` bins.
    pub fn new(n: usize) -> Self {
        Ring {
            cells: vec![Cell::default(); n.max(1)],
            gen: 0,
        }
    }

    /// Adds `v` to bin `bin` (absolute number); a bin the ring no longer
    /// holds is dropped.
    fn add(&mut self, bin: u64, v: [u64; W]) {
        let n = self.cells.len() as u64;
        let gen = self.gen;
        let c = &mut self.cells[(bin % n) as usize];
        if c.gen == gen && c.tag == bin + 1 {
            for (a, b) in c.v.iter_mut().zip(v) {
                *a += b;
            }
        } else if c.gen != gen || c.tag < bin + 1 {
            *c = Cell {
                tag: bin + 1,
                gen,
                v,
            };
        }
    }

    /// The counters of bin `bin`.
    fn get(&self, bin: u64) -> [u64; W] {
        let c = &self.cells[(bin % self.cells.len() as u64) as usize];
        if c.gen == self.gen && c.tag == bin + 1 {
            c.v
        } else {
            [0; W]
        }
    }

    /// Heap bytes it holds.
    fn heap_bytes(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<Cell<W>>()
    }

    /// Sums over bins `from..=to`.
    fn sum(&self, from: u64, to: u64) -> [u64; W] {
        let mut s = [0; W];
        for b in from..=to {
            for (a, v) in s.iter_mut().zip(self.get(b)) {
                *a += v;
            }
        }
        s
    }
}

impl<const W: usize> Payload for Ring<W> {
    fn reset(&mut self) {
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            // Once in 2^32 resets: old cells could look current again.
            self.cells.fill(Cell::default());
        }
    }
}

/// A tracked host: its traffic over time (sent bytes, received bytes,
/// packets both ways), and its main peers and services.
pub struct Host {
    ring: Ring<3>,
    peers: Mini<Addr, 8>,
    ports: Mini<(u8, u16), 8>,
}

impl Payload for Host {
    fn reset(&mut self) {
        self.ring.reset();
        self.peers.clear();
        self.ports.clear();
    }
}

type Conv = (Addr, Addr, u8, u16);

/// The longest log prefix kept (NFLOG's prefixes are at most 63 bytes).
pub const PREFIX_MAX: usize = 64;

/// A log prefix, inline: its bytes and length.
pub type Prefix = ([u8; PREFIX_MAX], u8);

/// The inline form of `p`, cut at [`PREFIX_MAX`] bytes.
pub fn prefix(p: &[u8]) -> Prefix {
    let n = p.len().min(PREFIX_MAX);
    let mut b = [0u8; PREFIX_MAX];
    b[..n].copy_from_slice(&p[..n]);
    (b, n as u8)
}

/// Every series and tally of one WEB instance.
pub struct Agg {
    bin_secs: u64,
    nbins: usize,
    /// The newest bin a flow record reached.
    newest: u64,
    /// The newest bin a logged packet reached: packets are live while
    /// flows may come from a replayed file, so each has its own "now".
    newest_packets: u64,
    series: [Ring<2>; 5],
    hosts: TopK<Addr, Host>,
    ports: TopK<(u8, u16), Ring<2>>,
    convs: TopK<Conv, Ring<2>>,
    prefixes: TopK<Prefix, Ring<2>>,
    /// Flow records taken.
    pub records: u64,
}

/// Splits `amount` over the bins that `[begin, end]` (seconds) covers, in
/// proportion to the seconds of each; the parts add up to `amount`.
fn spread<const W: usize>(
    begin: u64,
    end: u64,
    bin_secs: u64,
    nbins: usize,
    amount: [u64; W],
    mut f: impl FnMut(u64, [u64; W]),
) {
    let b1 = end / bin_secs;
    let mut b0 = begin.min(end) / bin_secs;
    let mut begin = begin.min(end);
    if b1 - b0 >= nbins as u64 {
        b0 = b1 + 1 - nbins as u64;
        begin = b0 * bin_secs;
    }
    let dur = end - begin;
    if b0 == b1 || dur == 0 {
        f(b1, amount);
        return;
    }
    let mut given = [0u64; W];
    for b in b0..=b1 {
        let upto = ((b + 1) * bin_secs).min(end) - begin;
        let mut part = [0u64; W];
        for i in 0..W {
            let due = if b == b1 {
                amount[i]
            } else {
                (u128::from(amount[i]) * u128::from(upto) / u128::from(dur)) as u64
            };
            part[i] = due - given[i];
            given[i] = due;
        }
        if part.iter().any(|&p| p > 0) {
            f(b, part);
        }
    }
}

impl Agg {
    /// Empty series of `nbins` bins of `bin_secs` seconds; tallies of
    /// `hosts` hosts and `services` services and conversations.
    pub fn new(bin_secs: u64, nbins: usize, hosts: usize, services: usize) -> Self {
        let nbins = nbins.max(1);
        Agg {
            bin_secs: bin_secs.max(1),
            nbins,
            newest: 0,
            newest_packets: 0,
            series: std::array::from_fn(|_| Ring::new(nbins)),
            hosts: TopK::new(hosts),
            ports: TopK::new(services),
            convs: TopK::new(services),
            prefixes: TopK::new(services),
            records: 0,
        }
    }

    /// Counts one flow record.
    pub fn add(&mut self, f: &Flow) {
        self.records += 1;
        let (bs, n) = (self.bin_secs, self.nbins);
        let end = f.end.max(f.start);
        let begin = if f.seq > 1 {
            end - (end - f.start) / u64::from(f.seq)
        } else {
            f.start
        };
        self.newest = self.newest.max(end / bs);
        let bytes = f.orig.0 + f.reply.0;
        let pkts = f.orig.1 + f.reply.1;
        let all = [bytes, pkts];
        let series = &mut self.series[f.class.min(4)];
        spread(begin, end, bs, n, all, |b, v| series.add(b, v));
        let bin = end / bs;
        self.ports
            .add((f.proto, f.dport), bytes, || Ring::new(n))
            .add(bin, all);
        self.convs
            .add((f.src, f.dst, f.proto, f.dport), bytes, || Ring::new(n))
            .add(bin, all);
        let fresh = || Host {
            ring: Ring::new(n),
            peers: Mini::default(),
            ports: Mini::default(),
        };
        for (me, peer, sent, recv) in [
            (f.src, f.dst, f.orig.0, f.reply.0),
            (f.dst, f.src, f.reply.0, f.orig.0),
        ] {
            let h = self.hosts.add(me, bytes, fresh);
            spread(begin, end, bs, n, [sent, recv, pkts], |b, v| {
                h.ring.add(b, v)
            });
            h.peers.add(peer, bytes);
            h.ports.add((f.proto, f.dport), bytes);
        }
    }

    /// Counts one logged packet of `bytes` bytes at `time` under its prefix.
    pub fn packet(&mut self, p: &[u8], bytes: u64, time: u64) {
        let n = self.nbins;
        let bin = time / self.bin_secs;
        self.newest_packets = self.newest_packets.max(bin);
        self.prefixes
            .add(prefix(p), 1, || Ring::new(n))
            .add(bin, [1, bytes]);
    }

    /// Heap bytes of every series and tally: fixed once the tallies are
    /// full, whatever the traffic.
    pub fn heap_bytes(&self) -> usize {
        let series: usize = self.series.iter().map(Ring::heap_bytes).sum();
        let hosts: usize = self
            .hosts
            .iter()
            .map(|e| e.payload.ring.heap_bytes() + std::mem::size_of::<Host>())
            .sum::<usize>()
            + self.hosts.table_bytes();
        let rings = |t: usize, len: usize| t + len * self.nbins * std::mem::size_of::<Cell<2>>();
        series
            + hosts
            + rings(self.ports.table_bytes(), self.ports.len())
            + rings(self.convs.table_bytes(), self.convs.len())
            + rings(self.prefixes.table_bytes(), self.prefixes.len())
    }

    /// The bins a window of `secs` seconds covers, ending at the newest.
    fn window(&self, secs: u64) -> (u64, u64) {
        self.window_to(secs, self.newest)
    }

    fn window_to(&self, secs: u64, newest: u64) -> (u64, u64) {
        let n = secs.div_ceil(self.bin_secs).clamp(1, self.nbins as u64);
        (newest.saturating_sub(n - 1), newest)
    }

    /// Bytes and packets by direction per bin over the last `secs` seconds.
    pub fn series(&self, secs: u64) -> Value {
        let (from, to) = self.window(secs);
        let mut classes = serde_json::Map::new();
        for (i, name) in CLASSES.iter().enumerate() {
            let r = &self.series[i];
            let bins: Vec<[u64; 2]> = (from..=to).map(|b| r.get(b)).collect();
            let total = r.sum(from, to);
            classes.insert(
                (*name).into(),
                json!({
                    "bytes": bins.iter().map(|v| v[0]).collect::<Vec<_>>(),
                    "packets": bins.iter().map(|v| v[1]).collect::<Vec<_>>(),
                    "total_bytes": total[0],
                    "total_packets": total[1],
                }),
            );
        }
        json!({
            "bin_seconds": self.bin_secs,
            "start": from * self.bin_secs,
            "end": (to + 1) * self.bin_secs,
            "records": self.records,
            "classes": classes,
        })
    }

    /// Top hosts (each way), services and conversations by bytes over the
    /// last `secs` seconds.
    pub fn top(&self, secs: u64, n: usize) -> Value {
        let (from, to) = self.window(secs);
        let mut hosts: Vec<(Addr, [u64; 3])> = self
            .hosts
            .iter()
            .map(|e| (e.key, e.payload.ring.sum(from, to)))
            .filter(|(_, v)| v[0] + v[1] > 0)
            .collect();
        let host_row = |(a, v): &(Addr, [u64; 3])| json!({"host": addr_text(a), "sent": v[0], "received": v[1], "packets": v[2]});
        hosts.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then(a.0.cmp(&b.0)));
        let sent: Vec<Value> = hosts.iter().take(n).map(host_row).collect();
        hosts.sort_by(|a, b| b.1[1].cmp(&a.1[1]).then(a.0.cmp(&b.0)));
        let received: Vec<Value> = hosts.iter().take(n).map(host_row).collect();
        let mut ports: Vec<((u8, u16), [u64; 2])> = self
            .ports
            .iter()
            .map(|e| (e.key, e.payload.sum(from, to)))
            .filter(|(_, v)| v[0] > 0)
            .collect();
        ports.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then(a.0.cmp(&b.0)));
        let mut convs: Vec<(Conv, [u64; 2])> = self
            .convs
            .iter()
            .map(|e| (e.key, e.payload.sum(from, to)))
            .filter(|(_, v)| v[0] > 0)
            .collect();
        convs.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then(a.0.cmp(&b.0)));
        let (pfrom, pto) = self.window_to(secs, self.newest_packets);
        let mut prefixes: Vec<(&Prefix, [u64; 2])> = self
            .prefixes
            .iter()
            .map(|e| (&e.key, e.payload.sum(pfrom, pto)))
            .filter(|(_, v)| v[0] > 0)
            .collect();
        prefixes.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then(a.0.cmp(b.0)));
        json!({
            "start": from * self.bin_secs,
            "end": (to + 1) * self.bin_secs,
            "hosts_sent": sent,
            "hosts_received": received,
            "services": ports.iter().take(n).map(|((p, port), v)| json!({
                "protocol": p, "port": port, "bytes": v[0], "packets": v[1]})).collect::<Vec<_>>(),
            "conversations": convs.iter().take(n).map(|((a, b, p, port), v)| json!({
                "source": addr_text(a), "destination": addr_text(b), "protocol": p,
                "port": port, "bytes": v[0], "packets": v[1]})).collect::<Vec<_>>(),
            "prefixes": prefixes.iter().take(n).map(|((b, len), v)| json!({
                "prefix": String::from_utf8_lossy(&b[..usize::from(*len)]),
                "packets": v[0], "bytes": v[1]})).collect::<Vec<_>>(),
            "hosts_tracked": self.hosts.len(),
            "hosts_replaced": self.hosts.evictions(),
        })
    }

    /// One host's traffic over time, peers and services, if it is tracked.
    pub fn host(&self, a: &Addr, secs: u64) -> Option<Value> {
        let e = self.hosts.get(a)?;
        let (from, to) = self.window(secs);
        let bins: Vec<[u64; 3]> = (from..=to).map(|b| e.payload.ring.get(b)).collect();
        let total = e.payload.ring.sum(from, to);
        Some(json!({
            "host": addr_text(a),
            "bin_seconds": self.bin_secs,
            "start": from * self.bin_secs,
            "end": (to + 1) * self.bin_secs,
            "sent": bins.iter().map(|v| v[0]).collect::<Vec<_>>(),
            "received": bins.iter().map(|v| v[1]).collect::<Vec<_>>(),
            "total_sent": total[0],
            "total_received": total[1],
            "total_packets": total[2],
            "peers": e.payload.peers.sorted().iter().map(|(p, b)| json!({
                "host": addr_text(p), "bytes": b})).collect::<Vec<_>>(),
            "services": e.payload.ports.sorted().iter().map(|((p, port), b)| json!({
                "protocol": p, "port": port, "bytes": b})).collect::<Vec<_>>(),
            "since_tracked_bytes": e.count - e.error,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(d: u8) -> Addr {
        addr(IpAddr::from([10, 0, 0, d]))
    }

    fn flow(src: u8, dst: u8, ob: u64, rb: u64, start: u64, end: u64, class: usize) -> Flow {
        Flow {
            src: v4(src),
            dst: v4(dst),
            proto: 6,
            dport: 443,
            orig: (ob, 1),
            reply: (rb, 1),
            start,
            end,
            seq: 1,
            class,
        }
    }

    #[test]
    fn spreading_keeps_the_sum_and_the_proportions() {
        let mut got = Vec::new();
        spread(5, 35, 10, 100, [3000u64], |b, v| got.push((b, v[0])));
        assert_eq!(got.iter().map(|g| g.1).sum::<u64>(), 3000);
        assert_eq!(got, [(0, 500), (1, 1000), (2, 1000), (3, 500)]);
        got.clear();
        // Longer than the ring: only the ring's part, all of it in range.
        spread(0, 1000, 10, 5, [100u64], |b, v| got.push((b, v[0])));
        assert_eq!(got.first().unwrap().0, 96);
        assert_eq!(got.iter().map(|g| g.1).sum::<u64>(), 100);
    }

    #[test]
    fn series_hosts_and_windows() {
        let mut a = Agg::new(10, 60, 100, 100);
        a.add(&flow(1, 2, 1000, 9000, 100, 100, 0));
        a.add(&flow(1, 3, 50, 70, 105, 109, 1));
        a.add(&flow(4, 2, 7, 0, 500, 500, 2));
        let s = a.series(600);
        assert_eq!(s["classes"]["inbound"]["total_bytes"], 10_000);
        assert_eq!(s["classes"]["outbound"]["total_bytes"], 120);
        assert_eq!(s["classes"]["internal"]["total_packets"], 2);
        // The last 100 s hold only the flow at 500.
        let s = a.series(100);
        assert_eq!(s["classes"]["inbound"]["total_bytes"], 0);
        assert_eq!(s["classes"]["internal"]["total_bytes"], 7);
        let t = a.top(600, 10);
        assert_eq!(t["hosts_sent"][0]["host"], "10.0.0.2");
        assert_eq!(t["hosts_sent"][0]["sent"], 9000);
        assert_eq!(t["hosts_received"][0]["host"], "10.0.0.1");
        assert_eq!(t["hosts_received"][0]["received"], 9070);
        assert_eq!(t["services"][0]["port"], 443);
        let h = a.host(&v4(1), 600).unwrap();
        assert_eq!(h["total_sent"], 1050);
        assert_eq!(h["peers"][0]["host"], "10.0.0.2");
        assert!(a.host(&v4(99), 600).is_none());
        // glibc's spelling, as IP2STR writes it (std's would be ::102:304).
        assert_eq!(
            addr_text(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            "::1.2.3.4"
        );
        a.packet(b"<b>drop</b> ", 60, 500);
        a.packet(b"<b>drop</b> ", 40, 501);
        let t = a.top(600, 10);
        assert_eq!(t["prefixes"][0]["prefix"], "<b>drop</b> ");
        assert_eq!(t["prefixes"][0]["packets"], 2);
        assert_eq!(t["prefixes"][0]["bytes"], 100);
    }

    #[test]
    fn a_replaced_host_starts_from_nothing_and_memory_is_bounded() {
        let mut a = Agg::new(10, 30, 2, 2);
        a.add(&flow(1, 2, 1000, 1000, 100, 100, 0));
        // Two new hosts take the two places.
        a.add(&flow(3, 4, 5, 7, 110, 110, 0));
        let full = a.heap_bytes();
        assert!(a.host(&v4(1), 600).is_none());
        let h = a.host(&v4(3), 600).unwrap();
        assert_eq!(
            (h["total_sent"].as_u64(), h["total_received"].as_u64()),
            (Some(5), Some(7))
        );
        for i in 0..200u8 {
            a.add(&flow(i, i.wrapping_add(1), 1, 1, 120, 120, 1));
        }
        assert_eq!(a.heap_bytes(), full, "the tallies do not grow");
    }

    #[test]
    fn updates_spread_over_their_period() {
        let mut a = Agg::new(10, 100, 10, 10);
        // Updates every 60 s of a flow started at 0: record k covers
        // [60(k-1), 60k].
        for k in 1..=3u32 {
            let mut f = flow(1, 2, 600, 0, 0, 60 * u64::from(k), 0);
            f.seq = k;
            a.add(&f);
        }
        let s = a.series(1000);
        let bytes: Vec<u64> =
            serde_json::from_value(s["classes"]["inbound"]["bytes"].clone()).unwrap();
        assert_eq!(bytes.iter().sum::<u64>(), 1800);
        assert!(
            bytes.iter().filter(|&&b| b > 0).all(|&b| b == 100),
            "{bytes:?}"
        );
    }
}
