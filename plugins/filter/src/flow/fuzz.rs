//! FLOW's packet path for fuzzing and its corpus replay: arbitrary bytes
//! are cut into packets, each decoded by BASE into its keys, which go
//! through FLOW's own key reading, fragment cache and table, and every
//! record the table makes is filled as the plugin fills it.

use super::frag::FragCache;
use super::table::{FlowTable, Timeouts};
use super::{Counters, FlowFilter, INPUT_KEYS, I_SEC, I_USEC, NIN, NKEYS};
use rulogd_plugin::{Record, Slot, StatSet, Value};

/// The table size the fuzzer runs with: small, so eviction is reached.
pub const FUZZ_MAX_FLOWS: usize = 64;

/// What one input did, for the fuzz target's assertions.
#[derive(Debug, Default)]
pub struct FuzzOutcome {
    /// Packets that became table packets.
    pub packets: usize,
    /// Records taken out of the table.
    pub records: usize,
    /// The most flows tracked at any time.
    pub peak_flows: usize,
    /// Flows still tracked after the forced end (must be 0).
    pub left: usize,
}

fn filter() -> FlowFilter {
    let s = 1_000_000;
    let to = Timeouts {
        tcp: 30 * s,
        udp: 10 * s,
        icmp: 5 * s,
        other: 10 * s,
        linger: s,
        active: 3 * s,
        max_life: 20 * s,
    };
    let set = StatSet::new("fuzz (FLOW)");
    FlowFilter {
        table: FlowTable::new(to, FUZZ_MAX_FLOWS),
        inputs: std::array::from_fn(|i| Some(i as Slot)),
        out: std::array::from_fn(|i| Some((NIN + i) as Slot)),
        last_wall: None,
        clock_moved: false,
        frags: FragCache::new(16),
        counters: Counters {
            flows: set.gauge("flows"),
            created: set.counter("flows_created"),
            updates: set.counter("update_records"),
            ended: std::array::from_fn(|_| set.counter("ended")),
        },
        publish_when_drained: false,
    }
}

/// Runs `data` through BASE and FLOW. Packets are `[len, time step, BASE
/// fuzz input of len bytes]` one after another (a short tail is the last
/// packet); the step moves the packets' clock by that many 100 ms.
pub fn fuzz_packets(data: &[u8]) -> FuzzOutcome {
    let mut f = filter();
    let mut rec = Record::with_slots(NIN + NKEYS);
    let mut out = FuzzOutcome::default();
    let mut t: u64 = 1_700_000_000;
    let mut usec: u64 = 0;
    let mut rest = data;
    while let [len, step, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (pkt, next) = tail.split_at(n);
        rest = next;
        usec += u64::from(*step) * 100_000;
        t += usec / 1_000_000;
        usec %= 1_000_000;
        rec.clear();
        for (name, v) in crate::base::fuzz_input(pkt) {
            if let Some(i) = INPUT_KEYS.iter().position(|k| k.name == name) {
                // BASE's raw values are spans into its packet, which FLOW
                // never reads; only its numbers, flags and addresses go in.
                if !matches!(v, Value::Raw(_)) {
                    rec.set(i as Slot, v);
                }
            }
        }
        rec.set(I_SEC as Slot, Value::U32(t as u32));
        rec.set(I_USEC as Slot, Value::U32(usec as u32));
        if let Some(p) = f.packet_of(&rec) {
            f.table.packet(&p);
            out.packets += 1;
        }
        out.peak_flows = out.peak_flows.max(f.table.len());
        out.records += drain(&mut f, &mut rec);
    }
    f.table.finish();
    out.records += drain(&mut f, &mut rec);
    out.left = f.table.len();
    out
}

fn drain(f: &mut FlowFilter, rec: &mut Record) -> usize {
    let mut n = 0;
    while let Some(r) = f.table.pop() {
        rec.clear();
        f.fill(&r, rec);
        n += 1;
        assert!(n <= 1 << 20, "the table keeps making records");
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp4(sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![2u8, 0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 8, 0, 0]);
        p
    }

    #[test]
    fn a_flow_of_real_packets_is_counted_and_ended() {
        let mut data = Vec::new();
        for _ in 0..3 {
            let p = udp4(1000, 53);
            data.push(p.len() as u8);
            data.push(1);
            data.extend_from_slice(&p);
        }
        let o = fuzz_packets(&data);
        assert_eq!((o.packets, o.records, o.peak_flows, o.left), (3, 1, 1, 0));
    }

    #[test]
    fn more_flows_than_the_table_holds_are_evicted_not_kept() {
        let mut data = Vec::new();
        for port in 0..200u16 {
            let p = udp4(port, 53);
            data.push(p.len() as u8);
            data.push(0);
            data.extend_from_slice(&p);
        }
        let o = fuzz_packets(&data);
        assert_eq!(o.packets, 200);
        assert_eq!(o.peak_flows, FUZZ_MAX_FLOWS);
        assert_eq!((o.records, o.left), (200, 0));
    }

    #[test]
    fn replays_the_fuzz_corpus() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fuzz/corpus/flow");
        let mut n = 0;
        for e in std::fs::read_dir(dir).expect("the flow corpus") {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            for cut in [data.len(), data.len() / 2, data.len().saturating_sub(1)] {
                let o = fuzz_packets(&data[..cut]);
                assert!(o.peak_flows <= FUZZ_MAX_FLOWS && o.left == 0, "{o:?}");
            }
            n += 1;
        }
        assert!(n >= 4, "only {n} corpus files");
    }
}
