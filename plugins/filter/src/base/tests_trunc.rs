//! BASE on cut and garbled packets: it never panics, and a header sets its
//! keys only once all of its bytes are there.

use super::test_packets::*;
use super::tests::{run, IP4_KEYS as IP4};
use super::{decode_for_fuzz, fuzz_input};
use rulogd_plugin::Value;

const TCP: [&str; 17] = [
    "tcp.sport",
    "tcp.dport",
    "tcp.seq",
    "tcp.ackseq",
    "tcp.window",
    "tcp.offset",
    "tcp.reserved",
    "tcp.urg",
    "tcp.urgp",
    "tcp.ack",
    "tcp.psh",
    "tcp.rst",
    "tcp.syn",
    "tcp.fin",
    "tcp.res1",
    "tcp.res2",
    "tcp.csum",
];

const IP6: [&str; 6] = [
    "ip.saddr",
    "ip.daddr",
    "ip6.payloadlen",
    "ip6.priority",
    "ip6.flowlabel",
    "ip6.hoplimit",
];

#[test]
fn tcp_cut_at_every_length() {
    assert_eq!(TCP4.len(), 48);
    for n in 0..=TCP4.len() {
        let h = run(2, 0x0800, &TCP4[..n]);
        let mut want: Vec<&str> = Vec::new();
        // IPv4 needs its 20 bytes and at least one more (ulogd's rule).
        if n > 20 {
            want.extend(IP4);
        }
        // TCP needs its 20-byte fixed header.
        if n >= 40 {
            want.extend(TCP);
        }
        want.push("oob.protocol");
        assert_eq!(h.valid_outputs(), want, "cut at {n}");
    }
}

#[test]
fn pktlen_cut_equals_buffer_cut() {
    for n in 0..=TCP4.len() {
        let mut h = run(2, 0x0800, TCP4);
        h.clear();
        h.set("oob.family", Value::U8(2));
        h.set("oob.protocol", Value::U16(0x0800));
        h.set_packet(TCP4);
        h.set("raw.pktlen", Value::U32(n as u32));
        h.run();
        let by_len: Vec<String> = h.valid_outputs().iter().map(|s| s.to_string()).collect();
        let by_buf = run(2, 0x0800, &TCP4[..n]);
        assert_eq!(by_len, by_buf.valid_outputs(), "cut at {n}");
    }
}

#[test]
fn ipv6_fragment_chain_cut_at_every_length() {
    for n in 0..=FRAG6.len() {
        let h = run(10, 0x86dd, &FRAG6[..n]);
        let mut want: Vec<&str> = Vec::new();
        if n >= 40 {
            want.extend(IP6);
        }
        // Hop-by-hop ends at 48, the fragment header at 56; a header that is
        // not all there ends decoding without ip6.nexthdr, as in ulogd.
        if n >= 56 {
            want.insert(0, "ip.protocol");
            want.extend(["ip6.nexthdr", "ip6.fragoff", "ip6.fragid"]);
        }
        if n >= 64 {
            want.extend(["udp.sport", "udp.dport", "udp.len", "udp.csum"]);
        }
        want.push("oob.protocol");
        let mut got = h.valid_outputs();
        // ip.protocol sorts before the ip6 keys; compare as sets in key order.
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "cut at {n}");
    }
}

/// Every packet the tests know, with the family and ethertype it goes with.
fn samples() -> Vec<(u8, u16, Vec<u8>)> {
    let mut v = vec![
        (2, 0x0800, UDP4.to_vec()),
        (2, 0x0800, TCP4.to_vec()),
        (2, 0x0800, ECHO4.to_vec()),
        (2, 0x0800, REDIRECT4.to_vec()),
        (2, 0x0800, FRAGNEEDED4.to_vec()),
        (2, 0x0800, SCTP4.to_vec()),
        (2, 0x0800, ESP4.to_vec()),
        (2, 0x0800, AH4.to_vec()),
        (10, 0x86dd, UDP6.to_vec()),
        (10, 0x86dd, FRAG6.to_vec()),
        (10, 0x86dd, ECHO6.to_vec()),
        (10, 0x86dd, AH6.to_vec()),
        (10, 0x86dd, esp6(0)),
        (10, 0x86dd, esp6(0xff)),
        (7, 0x0806, ARP.to_vec()),
        (3, 0x0806, ARP.to_vec()),
    ];
    // The same bytes under every other family too.
    let again: Vec<_> = v.iter().map(|(_, _, p)| p.clone()).collect();
    for p in again {
        for (f, e) in [(7, 0x0800), (7, 0x86dd), (3, 0), (2, 0), (10, 0)] {
            v.push((f, e, p.clone()));
        }
    }
    v
}

#[test]
fn every_prefix_of_every_sample_decodes_a_subset() {
    for (f, e, p) in samples() {
        let mut prev: Vec<&str> = vec![];
        for n in 0..=p.len() {
            let keys: Vec<&str> = decode_for_fuzz(f, e, &p[..n])
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert!(keys.contains(&"oob.protocol"));
            for k in &prev {
                assert!(keys.contains(k), "{f}/{e:#x}: {k} lost at {n} of {p:02x?}");
            }
            prev = keys;
        }
    }
}

/// A small deterministic generator, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn garbled_packets_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let samples = samples();
    for round in 0..20_000 {
        let (f, e, mut p) = samples[round % samples.len()].clone();
        // Flip a few bytes, often in the headers ...
        for _ in 0..(rng.next() % 4 + 1) {
            let i = (rng.next() as usize) % p.len().max(1);
            if let Some(b) = p.get_mut(i) {
                *b = rng.next() as u8;
            }
        }
        // ... and cut somewhere.
        let cut = (rng.next() as usize) % (p.len() + 1);
        let _ = decode_for_fuzz(f, e, &p[..cut]);
        // Fully random input through the fuzz entry point as well.
        let len = (rng.next() % 96) as usize;
        let r: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = fuzz_input(&r);
    }
}
