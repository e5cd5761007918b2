//! FLOW's packet path driven by arbitrary bytes, for the fuzzer and the
//! corpus replay: packets decoded by BASE's decoder go through FLOW's own
//! record reading and table, and every packet FLOW takes must come out in
//! the records exactly once, with the table never above `max_flows`.

use super::{build_flow, FlowFilter, OwnDecode, INPUT_KEYS, KEYS, NIN, NKEYS};
use crate::base::decode_for_fuzz;
use rulogd_plugin::{Binding, BuildCtx, Filter, Options, Record, SharedRegistry, Slot, Value};

/// The table's limit under fuzzing: small, so eviction and emergency run.
const MAX_FLOWS: usize = 8;

fn filter(cfg: u8) -> FlowFilter {
    let mut o = Options::defaults(&super::OPTIONS).expect("defaults");
    let set = |o: &mut Options, k: &str, v: &str| {
        let def = super::OPTIONS.iter().find(|d| d.name == k).expect("option");
        o.set(def, v, 1).expect("value");
    };
    set(&mut o, "max_flows", &MAX_FLOWS.to_string());
    set(&mut o, "emergency_threshold", "50");
    set(&mut o, "emergency_recovery", "70");
    set(&mut o, "emergency_udp_timeout", "5");
    set(
        &mut o,
        "active_timeout",
        if cfg & 1 != 0 { "2" } else { "0" },
    );
    set(
        &mut o,
        "start_records",
        if cfg & 2 != 0 { "1" } else { "0" },
    );
    set(
        &mut o,
        "unidirectional",
        if cfg & 4 != 0 { "1" } else { "0" },
    );
    set(&mut o, "max_life", if cfg & 8 != 0 { "30" } else { "0" });
    set(&mut o, "home_net", "10.0.0.0/8 fd00::/8");
    let shared = SharedRegistry::default();
    let ctx = BuildCtx {
        instance: "fuzz",
        info: &super::INFO,
        options: &o,
        shared: &shared,
    };
    let mut f = build_flow(&ctx).expect("build");
    f.bind(&Binding {
        instance: "fuzz",
        input_keys: &INPUT_KEYS,
        inputs: (0..NIN as Slot).map(Some).collect(),
        upstream: &[],
        output_base: NIN as Slot,
        active: vec![true; NKEYS],
    })
    .expect("bind");
    f
}

/// Packets counted in the records `f` has ready.
fn drain(f: &mut FlowFilter, rec: &mut Record) -> u64 {
    let slot = |name: &str| {
        let i = KEYS.iter().position(|k| k.name == name).expect("key");
        (NIN + i) as Slot
    };
    let (o, r) = (slot("orig.raw.pktcount"), slot("reply.raw.pktcount"));
    let mut n = 0;
    loop {
        rec.clear();
        if !f.take(rec) {
            return n;
        }
        n += rec.get_u64(Some(o)).unwrap_or(0) + rec.get_u64(Some(r)).unwrap_or(0);
    }
}

/// Runs FLOW over `data`: byte 0 picks the options (active timeout, start
/// records, unidirectional, max life), then each packet is `[len][seconds
/// since the previous][vlan][len bytes of IPv4 or IPv6]`. Panics (a bug the
/// fuzzer reports) when a packet is lost or counted twice, or the table
/// outgrows `max_flows`. Returns the packets FLOW took.
pub fn fuzz_input(data: &[u8]) -> u64 {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return 0;
    };
    let mut f = filter(cfg);
    // The same packets through FLOW's own decoding (as behind BASE in a
    // stack): each must come out as the one from BASE's keys.
    let mut own = filter(cfg);
    let base = (NIN + NKEYS) as Slot;
    let (p_pkt, p_len, p_proto) = (base, base + 1, base + 2);
    let map = std::array::from_fn(|i| crate::base::Decoder::index(&INPUT_KEYS[i].name));
    own.own = Some(OwnDecode {
        dec: crate::base::Decoder::new(map.iter().flatten().copied()),
        map,
        pkt: Some(p_pkt),
        pktlen: Some(p_len),
        protocol: Some(p_proto),
    });
    let mut rec = Record::with_slots(NIN + NKEYS + 3);
    let slot_of = |name: &str| INPUT_KEYS.iter().position(|k| k.name == name);
    let (mut taken, mut out) = (0u64, 0u64);
    let mut sec = 1_000_000u32;
    while rest.len() >= 3 {
        let (len, dt, vlan) = (usize::from(rest[0]), rest[1], rest[2]);
        let end = (3 + len).min(rest.len());
        let pkt = &rest[3..end];
        rest = &rest[end..];
        sec = sec.wrapping_add(u32::from(dt));
        let family = match pkt.first().map(|b| b >> 4) {
            Some(4) => 2,
            Some(6) => 10,
            _ => continue,
        };
        let protocol = if family == 2 { 0x0800 } else { 0x86dd };
        rec.clear();
        for (k, v) in decode_for_fuzz(family, protocol, pkt) {
            if let (Some(i), false) = (slot_of(k), matches!(v, Value::Raw(_))) {
                rec.set(i as Slot, v);
            }
        }
        let set = |rec: &mut Record, k: &str, v: Value| rec.set(slot_of(k).unwrap() as Slot, v);
        set(&mut rec, "oob.family", Value::U8(family));
        set(&mut rec, "oob.time.sec", Value::U32(sec));
        set(&mut rec, "oob.time.usec", Value::U32(0));
        if vlan != 0 {
            set(&mut rec, "oob.vlan", Value::U16(u16::from(vlan)));
        }
        rec.set(p_pkt, Value::RawOwned(std::sync::Arc::from(pkt)));
        rec.set(p_len, Value::U32(pkt.len() as u32));
        rec.set(p_proto, Value::U16(protocol));
        let p = f.packet_of(&rec);
        let mine = own.packet_of(&rec);
        assert_eq!(mine, p, "FLOW's own decoding against BASE's keys");
        if let Some(p) = p {
            f.table.packet(&p);
            taken += 1;
        }
        assert!(f.table.len() <= MAX_FLOWS, "{} flows", f.table.len());
        out += drain(&mut f, &mut rec);
    }
    f.finish();
    out += drain(&mut f, &mut rec);
    assert!(f.table.is_empty());
    assert_eq!(out, taken, "packets in records vs packets taken");
    taken
}

#[cfg(test)]
mod tests {
    #[test]
    fn corpus_replays_with_every_packet_counted_once() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fuzz/corpus/flow");
        let mut n = 0;
        for e in std::fs::read_dir(dir).expect("fuzz corpus directory") {
            let path = e.expect("entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            for cfg in 0..16u8 {
                let mut d = data.clone();
                if let Some(b) = d.first_mut() {
                    *b = cfg;
                }
                let taken = super::fuzz_input(&d);
                // The readable-named seeds (not what libFuzzer added) are
                // real traffic: most of their packets are taken.
                let name = path.file_name().unwrap().to_string_lossy();
                let added = name.len() == 40 && name.chars().all(|c| c.is_ascii_hexdigit());
                assert!(added || taken >= 5, "{}: {taken} packets", path.display());
            }
            n += 1;
        }
        assert!(n >= 3, "{n} corpus files");
    }
}
