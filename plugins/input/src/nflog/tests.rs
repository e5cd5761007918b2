//! Plugin tests that need no privileges: hand-built NFLOG datagrams are fed
//! through a Unix datagram socketpair into the real read loop.

use super::*;
use crate::testutil::{self, dgram_pair, send, stat, steady_allocs, Count};
pub(super) use crate::testutil::{get, Collect, V};
use rulogd_netlink::nflog::{attr, MSG_PACKET};
use rulogd_netlink::{finish_msg, put_attr, start_msg, NLMSG_DONE, NLM_F_MULTI};
use rulogd_plugin::Options;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// Settings from defaults plus `pairs`.
pub(super) fn settings(pairs: &[(&str, i64)]) -> Result<Settings, BuildError> {
    let mut o = Options::defaults(&OPTIONS).expect("defaults parse");
    for (k, v) in pairs {
        let def = OPTIONS.iter().find(|d| d.name == *k).expect("known option");
        o.set_int(def, *v, 1);
    }
    Settings::from_options(&o)
}

/// A binding with every output key active, or only those in `only`.
pub(super) fn binding(only: Option<&[&str]>) -> Binding<'static> {
    testutil::binding(&KEYS, |k| only.is_none_or(|o| o.contains(&&*k.name)))
}

/// An input reading one end of a Unix datagram socketpair; returns the other end.
fn pair(s: &Settings) -> (NflogInput, OwnedFd, Arc<StatSet>) {
    let (a, b) = dgram_pair();
    let set = StatSet::new("t (NFLOG)");
    let mut inp = NflogInput::new("t", s, NlSocket::from_fd(a), &set);
    inp.bind(&binding(None)).expect("bind");
    (inp, b, set)
}

fn msg(flags: u16, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    let s = start_msg(&mut v, MSG_PACKET, flags, 0);
    v.extend_from_slice(&[family, 0, 0, 7]);
    for (k, p) in attrs {
        put_attr(&mut v, *k, p);
    }
    finish_msg(&mut v, s);
    v
}

fn ts(sec: u64, usec: u64) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&sec.to_be_bytes());
    t[8..].copy_from_slice(&usec.to_be_bytes());
    t
}

#[test]
fn keys_and_options_match_ulogd_2_0_8() {
    let names: Vec<&str> = KEYS.iter().map(|k| &*k.name).collect();
    assert_eq!(
        names,
        [
            "raw.mac",
            "raw.pkt",
            "raw.pktlen",
            "raw.pktcount",
            "oob.prefix",
            "oob.time.sec",
            "oob.time.usec",
            "oob.mark",
            "oob.ifindex_in",
            "oob.ifindex_out",
            "oob.hook",
            "raw.mac_len",
            "oob.seq.local",
            "oob.seq.global",
            "oob.family",
            "oob.protocol",
            "oob.uid",
            "oob.gid",
            "raw.label",
            "raw.type",
            "raw.mac.saddr",
            "raw.mac.addrlen",
            "raw",
            "ct",
            // Ours, after ulogd's: the VLAN id of a bridged packet.
            "oob.vlan",
        ]
    );
    let ipfix: Vec<_> = KEYS
        .iter()
        .filter_map(|k| k.ipfix.map(|i| (&*k.name, i)))
        .collect();
    assert_eq!(ipfix.len(), 14);
    assert!(ipfix.contains(&("raw.mac.saddr", (0, 56))));
    assert!(ipfix.contains(&("oob.seq.global", (21373, 8))));
    let opts: Vec<_> = OPTIONS.iter().map(|o| (o.name, o.default)).collect();
    assert_eq!(
        &opts[..3],
        &[("bufsize", "150000"), ("group", "0"), ("unbind", "1")]
    );
    assert_eq!(opts[11], ("attach_conntrack", "0"));
    assert_eq!(crate::registrations()[0].info.name, "NFLOG");
}

#[test]
fn options_are_checked() {
    let s = settings(&[]).expect("defaults");
    assert_eq!(
        (s.bufsize, s.group, s.unbind, s.bind),
        (150_000, 0, true, false)
    );
    assert!(settings(&[("group", 70_000)]).is_err());
    assert!(settings(&[("bufsize", 0)]).is_err());
    assert!(settings(&[("netlink_nlbufsiz", 100)]).is_err());
    assert!(settings(&[("netlink_nlbufsiz", 131_072), ("bufsize", 65_536)]).is_err());
    assert_eq!(
        settings(&[("netlink_nlbufsiz", 131_072)])
            .map(|s| s.nlbufsiz)
            .ok(),
        Some(131_072)
    );
    // ulogd kept the low byte silently; rulogd refuses it.
    assert!(settings(&[("numeric_label", 300)]).is_err());
    assert_eq!(
        settings(&[("numeric_label", 255)]).map(|s| s.label).ok(),
        Some(255)
    );
}

#[test]
fn emits_records_with_ulogd_validity_rules() {
    let s = settings(&[("numeric_label", 3), ("vlan", 1)]).expect("settings");
    let (mut inp, tx, set) = pair(&s);
    // 1: local output packet, kernel timestamp, indev 0 present.
    let a = msg(
        0,
        2,
        &[
            (attr::PACKET_HDR, &[0x08, 0x00, 3, 0]),
            (attr::MARK, &[0, 0, 0, 9]),
            (attr::TIMESTAMP, &ts(1_700_000_000, 42)),
            (attr::IFINDEX_INDEV, &[0, 0, 0, 0]),
            (attr::IFINDEX_OUTDEV, &[0, 0, 0, 1]),
            (attr::PREFIX, b"pfx\0"),
            (attr::PAYLOAD, b"IPPKT"),
        ],
    );
    // 2: inbound with a link-layer header; timestamp second 0 means "now".
    let b = msg(
        0,
        10,
        &[
            (attr::PACKET_HDR, &[0x86, 0xdd, 0, 0]),
            (attr::TIMESTAMP, &ts(0, 999)),
            (attr::IFINDEX_INDEV, &[0, 0, 0, 2]),
            (attr::HWTYPE, &[0, 1]),
            (attr::HWLEN, &[0, 14]),
            (attr::HWHEADER, &[7; 14]),
            (attr::HWADDR, &[0, 6, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0]),
            (attr::UID, &[0, 0, 0, 5]),
            (attr::SEQ, &[0, 0, 0, 1]),
            // NFULA_VLAN (nested) { NFULA_VLAN_TCI: priority 3, id 300 }.
            (attr::VLAN | 0x8000, &[6, 0, 2, 0, 0x61, 0x2c, 0, 0]),
        ],
    );
    // 3: no packet header, hw length 0 with a header attribute anyway.
    let c = msg(
        0,
        7,
        &[
            (attr::HWLEN, &[0, 0]),
            (attr::HWHEADER, &[1; 4]),
            (attr::PAYLOAD, b""),
        ],
    );
    send(&tx, &[a.clone(), b, c].concat());
    let mut em = Collect::new(&KEYS);
    assert_eq!(inp.read(&mut em).expect("read"), ReadStatus::Idle);
    assert_eq!(em.out.len(), 3);
    let (r1, r2, r3) = (&em.out[0], &em.out[1], &em.out[2]);
    let i = |n: u64| Some(V::Int(n));
    let b = |x: &[u8]| Some(V::Bytes(x.to_vec()));
    assert_eq!(get(r1, "oob.family"), i(2));
    assert_eq!(get(r1, "oob.hook"), i(3));
    assert_eq!(get(r1, "oob.protocol"), i(0x0800));
    assert_eq!(get(r1, "oob.mark"), i(9));
    assert_eq!(get(r1, "oob.time.sec"), i(1_700_000_000));
    assert_eq!(get(r1, "oob.time.usec"), i(42));
    assert_eq!(get(r1, "oob.ifindex_in"), None, "ifindex 0 is not set");
    assert_eq!(get(r1, "oob.ifindex_out"), i(1));
    assert_eq!(get(r1, "oob.prefix"), b(b"pfx"), "prefix without its NUL");
    assert_eq!(get(r1, "raw.pkt"), b(b"IPPKT"));
    assert_eq!(get(r1, "raw.pktlen"), i(5));
    assert_eq!(get(r1, "raw.pktcount"), i(1));
    assert_eq!(get(r1, "raw.label"), i(3));
    assert_eq!(get(r1, "raw"), b(&a), "raw is the whole netlink message");
    for k in [
        "raw.mac",
        "raw.mac_len",
        "raw.type",
        "raw.mac.saddr",
        "oob.uid",
        "oob.seq.local",
        "ct",
        "oob.vlan",
    ] {
        assert_eq!(get(r1, k), None, "{k}");
    }
    let now = now_sec_usec().0 as u64;
    assert!(matches!(get(r2, "oob.time.sec"), Some(V::Int(t)) if t.abs_diff(now) < 5));
    assert_eq!(get(r2, "oob.protocol"), i(0x86dd));
    assert_eq!(get(r2, "oob.ifindex_in"), i(2));
    assert_eq!(get(r2, "raw.mac"), b(&[7; 14]));
    assert_eq!(get(r2, "raw.mac_len"), i(14));
    assert_eq!(get(r2, "raw.type"), i(1));
    assert_eq!(get(r2, "raw.mac.saddr"), b(&[1, 2, 3, 4, 5, 6]));
    assert_eq!(get(r2, "raw.mac.addrlen"), i(6));
    assert_eq!(get(r2, "oob.uid"), i(5));
    assert_eq!(get(r2, "oob.seq.local"), i(1));
    assert_eq!(get(r2, "oob.vlan"), i(300), "the id without the priority");
    assert_eq!(get(r2, "oob.mark"), i(0), "mark is always set");
    assert_eq!(get(r2, "raw.pkt"), None);
    for k in [
        "oob.hook",
        "oob.protocol",
        "raw.mac",
        "raw.mac_len",
        "raw.type",
    ] {
        assert_eq!(get(r3, k), None, "{k}");
    }
    assert_eq!(
        get(r3, "raw.pkt"),
        b(b""),
        "an empty payload is still a payload"
    );
    assert_eq!(get(r3, "raw.pktlen"), i(0));
    assert_eq!(stat(&set, "received"), 3);
    assert_eq!(stat(&set, "malformed"), 0);
}

#[test]
fn malformed_and_truncated_messages_are_counted_and_skipped() {
    let s = settings(&[("bufsize", 256)]).expect("settings");
    let (mut inp, tx, set) = pair(&s);
    let good = msg(NLM_F_MULTI, 2, &[(attr::PAYLOAD, b"ok")]);
    let mut bad = msg(NLM_F_MULTI, 2, &[(attr::MARK, &[0, 0, 0, 1])]);
    bad[20] = 200; // nla_len past the end of its message
    let mut done = Vec::new();
    let st = start_msg(&mut done, NLMSG_DONE, NLM_F_MULTI, 0);
    done.extend_from_slice(&[0; 4]);
    finish_msg(&mut done, st);
    let batch = [good.clone(), bad, good.clone(), done].concat();
    send(&tx, &batch);
    // Bigger than bufsize: the second message is cut off.
    let big = msg(0, 2, &[(attr::PAYLOAD, &[0; 150])]);
    send(&tx, &[big.clone(), big].concat());
    let mut em = Collect::new(&KEYS);
    assert_eq!(inp.read(&mut em).expect("read"), ReadStatus::Idle);
    assert_eq!(em.out.len(), 3);
    assert_eq!(stat(&set, "received"), 3);
    assert_eq!(stat(&set, "malformed"), 2);
    assert_eq!(stat(&set, "bytes"), (batch.len() + 256) as u64);
}

#[test]
fn read_stops_after_its_budget() {
    let (mut inp, tx, _set) = pair(&settings(&[]).expect("settings"));
    let m = msg(0, 2, &[(attr::PAYLOAD, b"x")]);
    for _ in 0..RECV_BUDGET + 6 {
        send(&tx, &m);
    }
    let mut em = Collect::new(&KEYS);
    assert_eq!(inp.read(&mut em).expect("read"), ReadStatus::More);
    assert_eq!(em.out.len(), RECV_BUDGET);
    assert_eq!(inp.read(&mut em).expect("read"), ReadStatus::Idle);
    assert_eq!(em.out.len(), RECV_BUDGET + 6);
}

#[test]
fn a_drained_busy_socket_pauses_once_before_idle() {
    let (mut inp, tx, _set) = pair(&settings(&[]).expect("settings"));
    assert!(!inp.coalesce, "a default-sized buffer never pauses");
    inp.coalesce = true;
    let m = msg(0, 2, &[(attr::PAYLOAD, b"x")]);
    send(&tx, &m);
    send(&tx, &m);
    let mut em = Collect::new(&KEYS);
    let t0 = std::time::Instant::now();
    // Both datagrams, then empty: one pause, still empty: idle.
    assert_eq!(inp.read(&mut em).expect("read"), ReadStatus::Idle);
    assert!(t0.elapsed() >= COALESCE, "{:?}", t0.elapsed());
    assert_eq!(em.out.len(), 2);
    // What arrived meanwhile is read by the next call as usual.
    send(&tx, &m);
    assert_eq!(inp.read(&mut em).expect("read"), ReadStatus::Idle);
    assert_eq!(em.out.len(), 3);
}

#[test]
fn sequence_gaps_are_counted() {
    let (mut inp, tx, set) = pair(&settings(&[("seq_local", 1)]).expect("settings"));
    for seq in [1u32, 2, 5, 6, 6, 3, 4] {
        send(&tx, &msg(0, 2, &[(attr::SEQ, &seq.to_be_bytes())]));
    }
    let mut em = Collect::new(&KEYS);
    inp.read(&mut em).expect("read");
    // 3 and 4 missing after 2; the repeat and the step back are not losses.
    assert_eq!(stat(&set, "seq_gaps"), 2);
}

#[test]
fn vlan_is_given_only_when_asked_so_the_default_output_is_ulogd2s() {
    let tagged = msg(
        0,
        7,
        &[
            (attr::PACKET_HDR, &[0x08, 0x00, 3, 0]),
            (attr::PAYLOAD, b"x"),
            (attr::VLAN | 0x8000, &[6, 0, 2, 0, 0x00, 0x0a, 0, 0]),
        ],
    );
    for (vlan, want) in [(0, None), (1, Some(10))] {
        let (mut inp, tx, _set) = pair(&settings(&[("vlan", vlan)]).expect("settings"));
        send(&tx, &tagged);
        let mut em = Collect::new(&KEYS);
        inp.read(&mut em).expect("read");
        let got = em.out[0]
            .iter()
            .find(|(k, _)| *k == "oob.vlan")
            .map(|(_, v)| v.clone());
        assert_eq!(got, want.map(V::Int), "vlan={vlan}");
    }
}

#[test]
fn inactive_keys_are_not_set() {
    let (mut inp, tx, _set) = pair(&settings(&[]).expect("settings"));
    inp.bind(&binding(Some(&["oob.prefix", "oob.mark"])))
        .expect("bind");
    send(
        &tx,
        &msg(0, 2, &[(attr::PREFIX, b"p\0"), (attr::PAYLOAD, b"x")]),
    );
    let mut em = Collect::new(&KEYS);
    inp.read(&mut em).expect("read");
    let keys: Vec<_> = em.out[0].iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["oob.prefix", "oob.mark"]);
}

#[test]
fn steady_state_reads_do_not_allocate() {
    let (mut inp, tx, _set) = pair(&settings(&[]).expect("settings"));
    let m = msg(
        0,
        2,
        &[(attr::PREFIX, b"pfx\0"), (attr::PAYLOAD, &[0x45; 84])],
    );
    let batch = [m.clone(), m.clone(), m].concat();
    let mut em = Count::new(NKEYS);
    // Warm up: the first split turns the buffer into a shared one, once.
    send(&tx, &batch);
    inp.read(&mut em).expect("read");
    let n = steady_allocs(0, 50, || {
        send(&tx, &batch);
        send(&tx, &batch);
        assert_eq!(inp.read(&mut em).expect("read"), ReadStatus::Idle);
    });
    assert_eq!(n, 0, "allocations in steady state");
    assert_eq!(em.n, 3 + 50 * 6);
}

#[test]
fn enobufs_grows_the_buffer_up_to_the_maximum() {
    let s = settings(&[
        ("netlink_socket_buffer_size", 8192),
        ("netlink_socket_buffer_maxsize", 32768),
    ])
    .expect("settings");
    let (mut inp, _tx, set) = pair(&s);
    inp.rcvbuf = RcvbufPolicy::new(Voice::Nflog, 8192, 32768);
    inp.on_enobufs();
    assert_eq!(inp.rcvbuf.requested(), 16384);
    inp.on_enobufs();
    assert_eq!(inp.rcvbuf.requested(), 32768);
    assert!(stat(&set, "rcvbuf") >= 32768, "gauge follows the socket");
    inp.on_enobufs();
    assert!(inp.rcvbuf.warned_at_max());
    assert_eq!(stat(&set, "enobufs"), 3);
}

#[test]
fn kernel_refusals_are_explained() {
    let err = kernel_error(
        "binding group 5",
        5,
        io::Error::from_raw_os_error(libc::EBUSY),
    );
    assert!(err
        .to_string()
        .contains("group 5 already bound by another process"));
    let err = kernel_error(
        "binding group 5",
        5,
        io::Error::from_raw_os_error(libc::ENOENT),
    );
    assert!(
        err.to_string().starts_with("NFLOG: binding group 5: "),
        "{err}"
    );
}

#[test]
#[ignore = "timing only; run with --release -- --ignored --nocapture"]
fn decode_cost_per_record() {
    let (mut inp, _tx, _set) = pair(&settings(&[]).expect("settings"));
    // A kernel-like batch: 30 output packets of 92 bytes with a prefix.
    let m = msg(
        0,
        2,
        &[
            (attr::PACKET_HDR, &[0x08, 0x00, 3, 0]),
            (attr::MARK, &[0, 0, 0, 0]),
            (attr::IFINDEX_OUTDEV, &[0, 0, 0, 1]),
            (attr::UID, &[0, 0, 0, 0]),
            (attr::GID, &[0, 0, 0, 0]),
            (attr::PREFIX, b"pfx\0"),
            (attr::PAYLOAD, &[0x45; 92]),
        ],
    );
    let chunk = Bytes::from(m.repeat(30));
    let mut em = Count::new(NKEYS);
    let rounds = 200_000;
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        inp.process(&chunk, &mut em);
    }
    let ns = t.elapsed().as_nanos() as f64 / em.n as f64;
    eprintln!("decode + fill: {ns:.1} ns per record ({} records)", em.n);
    assert_eq!(em.n, rounds * 30);
}
