//! Tests that need no privileges: hand-built nfnetlink_queue messages,
//! parsed directly and fed through a Unix datagram socketpair into the real
//! read loop. (Verdicts cannot reach a kernel there; their bytes are checked
//! instead, and tests/nfqueue.rs covers the kernel.)

use super::*;
use crate::testutil::{binding, dgram_pair, lookup, options, send, stat, Collect};
use rulogd_netlink::nfqueue::{
    attr, cfg, config_request, messages, parse_packet_at, Config, QueueError, MSG_CONFIG,
    MSG_PACKET, MSG_VERDICT_BATCH,
};
use rulogd_netlink::{finish_msg, put_attr, start_msg, NlHeader, NLMSG_ERROR};
use rulogd_plugin::Span;
use std::os::fd::OwnedFd;
use std::sync::Arc;

fn packet(queue: u16, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    let s = start_msg(&mut v, MSG_PACKET, 0, 0);
    v.push(family);
    v.push(0);
    v.extend_from_slice(&queue.to_be_bytes());
    for (k, p) in attrs {
        put_attr(&mut v, *k, p);
    }
    finish_msg(&mut v, s);
    v
}

fn hdr(id: u32, proto: u16, hook: u8) -> [u8; 7] {
    let (i, p) = (id.to_be_bytes(), proto.to_be_bytes());
    [i[0], i[1], i[2], i[3], p[0], p[1], hook]
}

const IP: &[u8] = &[
    0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
];

fn full(id: u32) -> Vec<u8> {
    let hw = [0, 6, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0];
    packet(
        3,
        2,
        &[
            (attr::PACKET_HDR, &hdr(id, 0x0800, 1)),
            (attr::MARK, &7u32.to_be_bytes()),
            (attr::IFINDEX_INDEV, &1u32.to_be_bytes()),
            (attr::HWADDR, &hw),
            (attr::PAYLOAD, IP),
            (attr::UID, &1000u32.to_be_bytes()),
            (attr::GID, &100u32.to_be_bytes()),
            (attr::CAP_LEN, &1500u32.to_be_bytes()),
            (99, b"ignored"),
        ],
    )
}

#[test]
fn parses_a_queued_packet() {
    let m = full(42);
    let h = NlHeader::parse(&m, 0).unwrap();
    let p = parse_packet_at(&m, &h).unwrap();
    assert_eq!((p.queue, p.family, p.id, p.hook), (3, 2, 42, 1));
    assert_eq!(p.hw_protocol, 0x0800);
    assert_eq!((p.mark, p.indev, p.outdev), (Some(7), Some(1), None));
    assert_eq!(
        (p.uid, p.gid, p.cap_len),
        (Some(1000), Some(100), Some(1500))
    );
    let pl = p.payload.unwrap();
    assert_eq!(&m[pl.off as usize..(pl.off + pl.len) as usize], IP);
    let hw = p.hwaddr.unwrap();
    assert_eq!((hw.addrlen, hw.addr.len), (6, 6));
    assert_eq!(p.msg, Span::new(0, m.len()));
}

#[test]
fn message_errors() {
    // No packet header: no id to answer.
    let m = packet(0, 2, &[(attr::PAYLOAD, IP)]);
    assert!(matches!(
        messages(&m).next(),
        Some(Err(QueueError::NoPacketHeader { offset: 0 }))
    ));
    // A short header attribute.
    let m = packet(0, 2, &[(attr::PACKET_HDR, &[0, 0, 0, 1])]);
    assert!(matches!(
        messages(&m).next(),
        Some(Err(QueueError::Parse(_)))
    ));
    // An error answer is decoded; other types are skipped.
    let mut e = Vec::new();
    let s = start_msg(&mut e, NLMSG_ERROR, 0, 9);
    e.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
    e.extend_from_slice(&[0; 16]);
    e[s + 16 + 4 + 8..s + 16 + 4 + 12].copy_from_slice(&9u32.to_ne_bytes());
    finish_msg(&mut e, s);
    let mut other = Vec::new();
    let s = start_msg(&mut other, MSG_CONFIG, 0, 0);
    finish_msg(&mut other, s);
    e.extend_from_slice(&other);
    let all: Vec<_> = messages(&e).collect();
    assert_eq!(
        all,
        vec![
            Ok(QueueMessage::Error {
                errno: libc::ENOENT,
                seq: 9
            }),
            Ok(QueueMessage::Other(MSG_CONFIG))
        ]
    );
    // Truncated framing ends the walk without panicking.
    assert!(messages(&full(1)[..10]).all(|m| m.is_err()));
}

#[test]
fn request_layouts() {
    let mut v = Vec::new();
    config_request(
        &mut v,
        5,
        3,
        &[
            Config::Cmd(cfg::CMD_BIND),
            Config::Params {
                mode: cfg::COPY_PACKET,
                range: 0xffff,
            },
        ],
    );
    // nlmsghdr 16 + nfgenmsg 4 + cmd (4+4) + params (4+5, padded to 12).
    assert_eq!(v.len(), 16 + 4 + 8 + 12);
    assert_eq!(u16::from_ne_bytes([v[4], v[5]]), MSG_CONFIG);
    assert_eq!(&v[18..20], &3u16.to_be_bytes());
    assert_eq!(&v[24..28], &[1, 0, 0, 0]);
    assert_eq!(&v[32..37], &[0, 0, 0xff, 0xff, 2]);
    let mut b = Vec::new();
    verdict_batch(&mut b, 1, 3, 77, NF_ACCEPT, Some(0x2a));
    assert_eq!(u16::from_ne_bytes([b[4], b[5]]), MSG_VERDICT_BATCH);
    assert_eq!(&b[24..32], &[0, 0, 0, 1, 0, 0, 0, 77]);
    assert_eq!(&b[36..40], &0x2au32.to_be_bytes());
    assert_eq!(b.len(), 40);
}

#[test]
fn ids_compare_across_wrap_around() {
    assert!(id_after(2, 1));
    assert!(!id_after(1, 2));
    assert!(id_after(0, u32::MAX));
    assert!(!id_after(5, 5));
}

fn settings(pairs: &[(&str, &str)]) -> Result<Settings, BuildError> {
    Settings::from_options(&options(&OPTIONS, pairs))
}

#[test]
fn option_checks() {
    let s = settings(&[]).unwrap();
    assert_eq!((s.queue, s.mark, s.fail_open, s.gso), (0, None, true, true));
    assert_eq!(s.copy_range, 0xffff);
    let (mask, flags) = s.flags();
    assert_eq!(flags, cfg::F_FAIL_OPEN | cfg::F_GSO | cfg::F_UID_GID);
    assert_eq!(mask & cfg::F_CONNTRACK, cfg::F_CONNTRACK);
    let s = settings(&[("verdict", "mark"), ("verdict_mark", "0x2a")]).unwrap();
    assert_eq!(s.mark, Some(42));
    assert!(settings(&[("verdict_mark", "1")]).is_err());
    assert!(settings(&[("verdict", "drop")]).is_err());
    assert!(settings(&[("queue_num", "65536")]).is_err());
    assert!(settings(&[("copy_range", "0")]).is_err());
    assert!(settings(&[("bufsize", "65536")]).is_err());
    assert!(settings(&[("bufsize", "5000"), ("copy_range", "512")]).is_ok());
    assert!(settings(&[("numeric_label", "256")]).is_err());
}

/// Collects `(key, value)` for every integer and the length of every span.
fn collect() -> Collect<u64> {
    Collect::with(&KEYS, |rec, v| match v.as_u64() {
        Some(n) => n,
        None => rec.bytes_of(v).map_or(0, |b| b.len() as u64),
    })
}

fn get(snap: &[(&'static str, u64)], k: &str) -> Option<u64> {
    lookup(snap, k).copied()
}

fn pair(s: &Settings) -> (NfqueueInput, OwnedFd, Arc<StatSet>) {
    let (a, b) = dgram_pair();
    let set = StatSet::new("t (NFQUEUE)");
    let inp = NfqueueInput::new("t", s, NlSocket::from_fd(a), &set);
    (inp, b, set)
}

#[test]
fn read_emits_records_and_batches_one_verdict() {
    let s = settings(&[
        ("verdict", "mark"),
        ("verdict_mark", "9"),
        ("numeric_label", "1"),
    ])
    .unwrap();
    let (mut inp, peer, set) = pair(&s);
    let mut em = collect();
    for id in [10, 11, 12] {
        send(&peer, &full(id));
    }
    send(&peer, &packet(3, 2, &[(attr::PAYLOAD, IP)]));
    assert_eq!(inp.read(&mut em).unwrap(), ReadStatus::Idle);
    assert_eq!(em.out.len(), 3);
    let r = &em.out[2];
    assert_eq!(get(r, "oob.packet_id"), Some(12));
    assert_eq!(get(r, "oob.queue"), Some(3));
    assert_eq!(get(r, "oob.family"), Some(2));
    assert_eq!(get(r, "oob.protocol"), Some(0x0800));
    assert_eq!(get(r, "oob.hook"), Some(1));
    assert_eq!(get(r, "oob.mark"), Some(7));
    assert_eq!(get(r, "oob.ifindex_in"), Some(1));
    assert_eq!(get(r, "oob.ifindex_out"), None);
    assert_eq!(get(r, "raw.pktlen"), Some(20));
    assert_eq!(get(r, "raw.pkt"), Some(20));
    assert_eq!(get(r, "raw.mac.addrlen"), Some(6));
    assert_eq!(get(r, "raw.label"), Some(1));
    assert_eq!(
        (get(r, "oob.uid"), get(r, "oob.gid")),
        (Some(1000), Some(100))
    );
    assert!(get(r, "oob.time.sec").is_some_and(|t| t > 1_600_000_000));
    assert_eq!(get(r, "oob.prefix"), None);
    assert_eq!(stat(&set, "malformed"), 1);
    // One batch verdict naming the highest id, with the mark; a socketpair
    // refuses a netlink address, so it stays pending.
    assert_eq!(&inp.out[24..32], &[0, 0, 0, 1, 0, 0, 0, 12]);
    assert_eq!(&inp.out[36..40], &9u32.to_be_bytes());
    assert_eq!(inp.pending, Some(12));
    assert_eq!(stat(&set, "verdict_errors"), 1);
    // An older id arriving late does not lower the batch's reach.
    send(&peer, &full(5));
    inp.read(&mut em).unwrap();
    assert_eq!(inp.pending, Some(12));
    assert_eq!(inp.last_id, Some(12));
}

#[test]
fn unbound_keys_are_not_set() {
    let s = settings(&[]).unwrap();
    let (mut inp, peer, _set) = pair(&s);
    let b = binding(&KEYS, |k| k.name == "raw.pkt");
    inp.bind(&b).unwrap();
    let mut em = collect();
    send(&peer, &full(1));
    inp.read(&mut em).unwrap();
    assert_eq!(em.out, vec![vec![("raw.pkt", 20)]]);
}
