//! Unit tests of the flow table's own invariants.

use super::*;

#[test]
fn a_tracked_flow_stays_small() {
    // The slab entry; the index adds 4 bytes and a control byte per slot.
    assert!(
        std::mem::size_of::<Flow>() <= 128,
        "{}",
        std::mem::size_of::<Flow>()
    );
}

#[test]
fn a_packet_while_finish_walks_ends_the_rest_first() {
    let s = 1_000_000;
    let to = Timeouts {
        tcp: 300 * s,
        udp: 60 * s,
        icmp: 30 * s,
        other: 60 * s,
        linger: 10 * s,
        active: 0,
        max_life: 0,
    };
    let mut t = FlowTable::new(to, 10);
    let udp = |sport: u16, time: Usec| Packet {
        family: 2,
        proto: PROTO_UDP,
        src: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        dst: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        sport,
        dport: 53,
        bytes: 60,
        time,
        ..Packet::default()
    };
    for p in 1..=3 {
        t.packet(&udp(p, 1_700_000_000 * s));
    }
    t.finish();
    assert_eq!(t.pop().map(|r| r.key.pa), Some(1));
    assert_eq!(t.len(), 2);
    // Port 1 again: a new flow, after the two left have ended.
    t.packet(&udp(1, 1_700_000_001 * s));
    assert_eq!(t.len(), 1);
    let ends: Vec<_> = std::iter::from_fn(|| t.pop())
        .map(|r| (r.key.pa, r.reason))
        .collect();
    assert_eq!(ends, [(2, Reason::Forced), (3, Reason::Forced)]);
    assert_eq!((t.stats.ended[4], t.stats.created), (3, 4));
    t.finish();
    assert_eq!(t.pop().map(|r| (r.key.pa, r.seq)), Some((1, 1)));
    assert!(t.pop().is_none() && t.is_empty());
}
