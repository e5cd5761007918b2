//! The flow table driven with synthetic packets on a replayed clock.

use super::table::{tcp, Dir, FlowTable, Kind, Packet, Reason, Report, Timeouts, Usec};

const S: Usec = 1_000_000;
const T0: Usec = 1_700_000_000 * S;

fn to() -> Timeouts {
    Timeouts {
        tcp: 300 * S,
        udp: 60 * S,
        icmp: 30 * S,
        other: 60 * S,
        linger: 10 * S,
        active: 0,
        max_life: 0,
    }
}

fn v4(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[10, 0, 0, last]);
    a
}

/// A packet from host `s`:`sp` to host `d`:`dp` at T0 + `t` seconds.
#[allow(clippy::too_many_arguments)]
fn pkt(proto: u8, s: u8, sp: u16, d: u8, dp: u16, flags: u8, bytes: u64, t: Usec) -> Packet {
    Packet {
        family: 2,
        proto,
        src: v4(s),
        dst: v4(d),
        sport: sp,
        dport: dp,
        vlan: 0,
        bytes,
        flags,
        icmp: None,
        time: T0 + t * S,
    }
}

fn drain(t: &mut FlowTable) -> Vec<Report> {
    std::iter::from_fn(|| t.pop()).collect()
}

/// The initiator's address byte and port of a report.
fn initiator(r: &Report) -> (u8, u16) {
    if r.init_is_a {
        (r.key.a[3], r.key.pa)
    } else {
        (r.key.b[3], r.key.pb)
    }
}

const SA: u8 = tcp::SYN | tcp::ACK;

#[test]
fn tcp_session_counts_per_direction_and_ends_after_fin_linger() {
    let mut t = FlowTable::new(to(), 100);
    // The client has the higher address, so canonical order is not orientation.
    t.packet(&pkt(6, 9, 40000, 1, 80, tcp::SYN, 60, 0));
    t.packet(&pkt(6, 1, 80, 9, 40000, SA, 60, 0));
    t.packet(&pkt(6, 9, 40000, 1, 80, tcp::ACK | tcp::PSH, 100, 1));
    t.packet(&pkt(6, 1, 80, 9, 40000, tcp::ACK, 1500, 1));
    t.packet(&pkt(6, 9, 40000, 1, 80, tcp::FIN | tcp::ACK, 52, 2));
    t.packet(&pkt(6, 1, 80, 9, 40000, tcp::FIN | tcp::ACK, 52, 2));
    assert_eq!(t.len(), 1);
    t.advance(T0 + 11 * S);
    assert!(
        drain(&mut t).is_empty(),
        "linger counts from the last packet"
    );
    t.packet(&pkt(6, 9, 40000, 1, 80, tcp::ACK, 52, 3));
    t.advance(T0 + 13 * S);
    let r = drain(&mut t);
    assert_eq!(r.len(), 1);
    let r = r[0];
    assert_eq!(
        (r.kind, r.reason, r.guessed),
        (Kind::End, Reason::Fin, false)
    );
    assert_eq!(initiator(&r), (9, 40000));
    assert_eq!((r.orig.pkts, r.orig.bytes), (4, 60 + 100 + 52 + 52));
    assert_eq!((r.reply.pkts, r.reply.bytes), (3, 60 + 1500 + 52));
    assert_eq!(r.orig.flags, tcp::SYN | tcp::ACK | tcp::PSH | tcp::FIN);
    assert_eq!(r.reply.flags, SA | tcp::FIN);
    assert_eq!((r.start, r.end), (T0, T0 + 3 * S));
    assert!(t.is_empty());
    assert_eq!(t.stats.ended[1], 1);
}

#[test]
fn syn_ack_first_means_the_destination_initiated() {
    let mut t = FlowTable::new(to(), 100);
    t.packet(&pkt(6, 1, 80, 9, 40000, SA, 60, 0));
    t.packet(&pkt(6, 9, 40000, 1, 80, tcp::ACK, 52, 0));
    t.finish();
    let r = drain(&mut t)[0];
    assert_eq!(initiator(&r), (9, 40000));
    assert!(r.guessed);
    assert_eq!((r.orig.pkts, r.reply.pkts), (1, 1));
    assert_eq!(r.reason, Reason::Forced);
}

#[test]
fn mid_stream_is_guessed_from_the_first_packet_and_a_later_syn_corrects_it() {
    let mut t = FlowTable::new(to(), 100);
    t.packet(&pkt(6, 1, 80, 9, 40000, tcp::ACK, 500, 0));
    t.finish();
    let r = drain(&mut t)[0];
    assert_eq!((initiator(&r), r.guessed), ((1, 80), true));
    // Then a SYN from the other side: it was the initiator after all.
    t.packet(&pkt(6, 1, 80, 9, 40000, tcp::ACK, 500, 1));
    t.packet(&pkt(6, 9, 40000, 1, 80, tcp::SYN, 60, 2));
    t.finish();
    let r = drain(&mut t)[0];
    assert_eq!((initiator(&r), r.guessed), ((9, 40000), false));
    assert_eq!((r.orig.pkts, r.orig.bytes), (1, 60));
    assert_eq!((r.reply.pkts, r.reply.bytes), (1, 500));
}

#[test]
fn rst_ends_after_the_linger_and_idle_timeouts_are_per_protocol() {
    let mut t = FlowTable::new(to(), 100);
    t.packet(&pkt(6, 1, 1000, 2, 22, tcp::SYN, 60, 0));
    t.packet(&pkt(6, 2, 22, 1, 1000, tcp::RST | tcp::ACK, 40, 0));
    t.packet(&pkt(17, 1, 5353, 2, 53, 0, 80, 0));
    t.packet(&pkt(47, 1, 0, 2, 0, 0, 80, 0));
    t.packet(&pkt(6, 1, 1001, 2, 22, tcp::SYN, 60, 0));
    let mut icmp = pkt(1, 1, 7, 2, 7, 0, 84, 0);
    icmp.icmp = Some((8, 0));
    t.packet(&icmp);
    let ended = |t: &mut FlowTable, at: Usec| -> Vec<(u8, Reason)> {
        t.advance(T0 + at * S);
        drain(t).iter().map(|r| (r.key.proto, r.reason)).collect()
    };
    assert_eq!(ended(&mut t, 9), []);
    assert_eq!(ended(&mut t, 10), [(6, Reason::Rst)]);
    assert_eq!(ended(&mut t, 30), [(1, Reason::Idle)]);
    let mut at60 = ended(&mut t, 60);
    at60.sort_by_key(|x| x.0);
    assert_eq!(at60, [(17, Reason::Idle), (47, Reason::Idle)]);
    assert_eq!(ended(&mut t, 299), []);
    assert_eq!(ended(&mut t, 300), [(6, Reason::Idle)]);
    assert!(t.is_empty());
    assert_eq!(t.stats.created, 5);
    assert_eq!(t.stats.ended, [4, 0, 1, 0, 0, 0]);
}

#[test]
fn icmp_keeps_its_type_and_code() {
    let mut t = FlowTable::new(to(), 10);
    let mut req = pkt(1, 1, 7, 2, 7, 0, 84, 0);
    req.icmp = Some((8, 0));
    let mut rep = pkt(1, 2, 7, 1, 7, 0, 84, 0);
    rep.icmp = Some((0, 0));
    t.packet(&req);
    t.packet(&rep);
    t.finish();
    let r = drain(&mut t)[0];
    assert_eq!((r.icmp, initiator(&r).0), (Some((8, 0)), 1));
    assert_eq!((r.orig.pkts, r.reply.pkts), (1, 1));
}

#[test]
fn active_timeout_updates_carry_deltas_that_sum_to_the_totals() {
    let mut t = FlowTable::new(
        Timeouts {
            active: 60 * S,
            ..to()
        },
        10,
    );
    let (mut op, mut ob, mut rp, mut rb) = (0, 0, 0, 0);
    for s in 0..250u64 {
        t.packet(&pkt(17, 1, 5000, 2, 6000, 0, 100 + s, s));
        (op, ob) = (op + 1, ob + 100 + s);
        if s % 3 == 0 {
            t.packet(&pkt(17, 2, 6000, 1, 5000, 0, 40, s));
            (rp, rb) = (rp + 1, rb + 40);
        }
    }
    t.finish();
    let r = drain(&mut t);
    let kinds: Vec<_> = r.iter().map(|r| (r.kind, r.reason)).collect();
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    assert!(kinds[..4]
        .iter()
        .all(|k| *k == (Kind::Update, Reason::Active)));
    assert_eq!(kinds[4], (Kind::End, Reason::Forced));
    let sum = r.iter().fold(Dir::default(), |a, r| Dir {
        pkts: a.pkts + r.orig.pkts + r.reply.pkts * 1_000_000,
        bytes: a.bytes + r.orig.bytes + r.reply.bytes * 1_000_000,
        flags: 0,
    });
    assert_eq!(sum.pkts, op + rp * 1_000_000);
    assert_eq!(sum.bytes, ob + rb * 1_000_000);
    assert!(r.iter().all(|x| x.id == r[0].id && x.start == T0));
    let seqs: Vec<_> = r.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
}

#[test]
fn a_full_table_evicts_the_least_recently_active_and_never_grows() {
    let mut t = FlowTable::new(to(), 1000);
    // Flow 0 stays busy; 100K others come and go.
    for i in 0..100_000u64 {
        let port = 1024 + (i % 60000) as u16;
        let host = 10 + (i / 60000) as u8;
        t.packet(&pkt(17, host, port, 2, 53, 0, 60, i / 1000));
        t.packet(&pkt(17, 1, 9, 2, 9, 0, 60, i / 1000));
        assert!(t.len() <= 1000);
        for r in std::iter::from_fn(|| t.pop()) {
            assert_ne!(r.key.pa, 9, "the busy flow was evicted");
            assert_eq!(r.reason, Reason::Evicted);
        }
    }
    assert_eq!(t.len(), 1000);
    assert_eq!(t.stats.ended[3], 100_000 + 1 - 1000);
    assert_eq!(t.stats.created, 100_001);
}

mod plugin {
    use crate::testutil::Harness;
    use rulogd_plugin::{Value, Verdict};
    use std::net::Ipv4Addr;
    use std::time::{Duration, Instant};

    /// A UDP packet record as BASE leaves it.
    fn udp(h: &mut Harness, src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, len: u16) {
        h.clear();
        h.set("oob.family", Value::U8(2));
        h.set("ip.saddr", Value::Ipv4(Ipv4Addr::from(src)));
        h.set("ip.daddr", Value::Ipv4(Ipv4Addr::from(dst)));
        h.set("ip.protocol", Value::U8(17));
        h.set("ip.totlen", Value::U16(len));
        h.set("ip.id", Value::U16(77));
        h.set("ip.fragoff", Value::U16(0x4000));
        h.set("udp.sport", Value::U16(sp));
        h.set("udp.dport", Value::U16(dp));
        h.set("oob.time.sec", Value::U32(1_000));
        h.set("oob.time.usec", Value::U32(250));
    }

    fn take(h: &mut Harness) -> bool {
        h.clear();
        h.filter.take(&mut h.rec)
    }

    #[test]
    fn packets_stop_and_a_quiet_link_ends_its_flow_on_the_wall_clock() {
        let mut h = Harness::new(super::super::REGISTRATION);
        assert!(h.filter.emits());
        let (client, server) = ([10, 0, 0, 9], [10, 0, 0, 1]);
        udp(&mut h, client, 5000, server, 53, 60);
        assert_eq!(h.run(), Verdict::Drop);
        // The reply in two fragments: the first (MF set) has the ports.
        udp(&mut h, server, 53, client, 5000, 200);
        h.set("ip.fragoff", Value::U16(0x2000));
        assert_eq!(h.run(), Verdict::Drop);
        // The later one: BASE's "ports" are payload bytes.
        udp(&mut h, server, 9, client, 9, 1500);
        h.set("ip.fragoff", Value::U16(185));
        assert_eq!(h.run(), Verdict::Drop);
        let t0 = Instant::now();
        h.filter.tick(t0);
        assert!(!take(&mut h), "nothing has timed out");
        h.filter.tick(t0 + Duration::from_secs(59));
        assert!(!take(&mut h));
        h.filter.tick(t0 + Duration::from_secs(61));
        assert!(take(&mut h), "udp_timeout (60 s) passed on the wall clock");
        let ip = |h: &Harness, k: &str| match h.out(k) {
            Some(Value::Ipv4(a)) => a.octets(),
            v => panic!("{k}: {v:?}"),
        };
        assert_eq!(ip(&h, "orig.ip.saddr"), client);
        assert_eq!(ip(&h, "orig.ip.daddr"), server);
        assert_eq!(ip(&h, "reply.ip.saddr"), server);
        assert_eq!(ip(&h, "reply.ip.daddr"), client);
        let u = |h: &Harness, k: &str| h.out(k).and_then(Value::as_u64);
        assert_eq!(u(&h, "orig.l4.sport"), Some(5000));
        assert_eq!(u(&h, "orig.l4.dport"), Some(53));
        assert_eq!(u(&h, "reply.l4.sport"), Some(53));
        assert_eq!(u(&h, "orig.raw.pktcount"), Some(1));
        assert_eq!(u(&h, "orig.raw.pktlen"), Some(60));
        assert_eq!(u(&h, "reply.raw.pktcount"), Some(2));
        assert_eq!(u(&h, "reply.raw.pktlen"), Some(1700));
        assert_eq!(u(&h, "flow.start.sec"), Some(1_000));
        assert_eq!(u(&h, "flow.start.usec"), Some(250));
        assert_eq!(u(&h, "flow.seq"), Some(1));
        assert_eq!(u(&h, "oob.family"), Some(2));
        assert_eq!(h.out_text("flow.type"), "end");
        assert_eq!(h.out_text("flow.end_reason"), "idle");
        assert_eq!(u(&h, "ct.event"), Some(4), "NFCT's DESTROY");
        assert!(h.out("orig.tcp.flags").is_none(), "UDP has no flags");
        assert!(!take(&mut h), "one flow, one record");
    }

    #[test]
    fn one_five_tuple_on_two_vlans_is_two_flows_with_their_vlan_ids() {
        let mut h = Harness::new(super::super::REGISTRATION);
        for vlan in [Some(10), Some(20), None, Some(10)] {
            udp(&mut h, [10, 0, 0, 2], 999, [10, 0, 0, 1], 53, 60);
            if let Some(v) = vlan {
                h.set("oob.vlan", Value::U16(v));
            }
            h.run();
        }
        h.filter.finish();
        let mut seen = Vec::new();
        while take(&mut h) {
            let v = h.out("oob.vlan").and_then(Value::as_u64);
            let pkts = h.out("orig.raw.pktcount").and_then(Value::as_u64);
            seen.push((v, pkts));
        }
        seen.sort();
        assert_eq!(
            seen,
            [(None, Some(1)), (Some(10), Some(2)), (Some(20), Some(1))]
        );
    }

    #[test]
    fn home_net_gives_each_flow_its_initiators_direction() {
        let reg = super::super::REGISTRATION;
        let mut h = Harness::with_options(reg, &[("home_net", "10.1.0.0/16")], |_| true, |_| true);
        // (client, server): the client speaks first, so it is the source.
        let flows = [
            ([10, 1, 0, 5], [8, 8, 8, 8], "outbound"),
            ([8, 8, 4, 4], [10, 1, 2, 3], "inbound"),
            ([10, 1, 0, 5], [10, 1, 9, 9], "internal"),
            ([10, 2, 0, 5], [8, 8, 8, 8], "external"),
        ];
        for (i, (c, s, _)) in flows.iter().enumerate() {
            let port = 2000 + i as u16;
            udp(&mut h, *c, port, *s, 53, 60);
            h.run();
            udp(&mut h, *s, 53, *c, port, 60);
            h.run();
        }
        h.filter.finish();
        let mut got = Vec::new();
        while take(&mut h) {
            let port = h.out("orig.l4.sport").and_then(Value::as_u64).unwrap();
            got.push((port, h.out_text("flow.direction")));
        }
        got.sort();
        let want: Vec<_> = (0..4)
            .map(|i| (2000 + i as u64, flows[i].2.to_string()))
            .collect();
        assert_eq!(got, want);
        // Without home_net there is no direction.
        let mut h = Harness::new(reg);
        udp(&mut h, [10, 1, 0, 5], 1, [8, 8, 8, 8], 53, 60);
        h.run();
        h.filter.finish();
        assert!(take(&mut h));
        assert!(h.out("flow.direction").is_none());
    }

    #[test]
    fn finish_ends_every_flow_as_forced() {
        let mut h = Harness::new(super::super::REGISTRATION);
        for port in [1, 2, 3] {
            udp(&mut h, [10, 0, 0, 2], port, [10, 0, 0, 1], 53, 60);
            h.run();
        }
        h.filter.finish();
        let mut n = 0;
        while take(&mut h) {
            assert_eq!(h.out_text("flow.end_reason"), "forced");
            n += 1;
        }
        assert_eq!(n, 3);
    }
}

#[test]
fn finish_ends_flows_one_at_a_time_as_they_are_taken() {
    let mut t = FlowTable::new(to(), 100_000);
    for port in 0..10_000u16 {
        t.packet(&pkt(17, 1, port, 2, 53, 0, 60, 0));
    }
    t.finish();
    assert_eq!(t.len(), 10_000, "nothing is queued up front");
    let mut left = 10_000;
    while let Some(r) = t.pop() {
        left -= 1;
        assert_eq!((r.reason, t.len()), (Reason::Forced, left));
    }
    assert_eq!((left, t.stats.ended[4]), (0, 10_000));
}

#[test]
fn start_records_come_at_the_first_packet_and_keep_the_sums() {
    let mut t = FlowTable::new(to(), 10);
    t.set_start_records(true);
    t.packet(&pkt(6, 1, 80, 9, 40000, SA, 60, 0));
    let r = drain(&mut t);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].kind, r[0].seq, initiator(&r[0])),
        (Kind::Start, 1, (9, 40000))
    );
    assert_eq!((r[0].orig.pkts, r[0].reply.pkts), (0, 1));
    t.packet(&pkt(6, 9, 40000, 1, 80, tcp::ACK, 52, 0));
    assert!(drain(&mut t).is_empty(), "one start record a flow");
    t.finish();
    let e = drain(&mut t);
    assert_eq!((e[0].kind, e[0].seq), (Kind::End, 2));
    assert_eq!(
        (e[0].orig.pkts, e[0].reply.pkts),
        (1, 0),
        "deltas after the start"
    );
}

#[test]
fn max_life_ends_a_busy_flow_and_the_next_packet_starts_another() {
    let mut t = FlowTable::new(
        Timeouts {
            max_life: 100 * S,
            ..to()
        },
        10,
    );
    for s in 0..250 {
        t.packet(&pkt(17, 1, 5000, 2, 53, 0, 60, s));
    }
    t.finish();
    let r = drain(&mut t);
    let got: Vec<_> = r.iter().map(|r| (r.reason, r.orig.pkts, r.start)).collect();
    assert_eq!(
        got,
        [
            (Reason::Active, 100, T0),
            (Reason::Active, 100, T0 + 100 * S),
            (Reason::Forced, 50, T0 + 200 * S)
        ]
    );
    assert!(
        r[0].id != r[1].id && r[1].id != r[2].id,
        "each a flow entry of its own"
    );
}
