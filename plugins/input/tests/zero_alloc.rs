//! The steady-state read paths of UNIXSOCK and NFQUEUE allocate nothing.
//!
//! A separate test binary, because it installs a counting global allocator:
//! the one of the crate's unit tests, whose file it includes.

use rulogd_input::nfqueue::{self, NfqueueInput};
use rulogd_input::unixsock::frame::{encode, opt};
use rulogd_input::unixsock::{self, UnixsockInput};
use rulogd_netlink::nfqueue::{attr, MSG_PACKET};
use rulogd_netlink::socket::NlSocket;
use rulogd_netlink::{finish_msg, put_attr, start_msg};
use rulogd_plugin::{Input, Options, StatSet};
use std::io::Write;
use std::os::unix::net::UnixStream;

#[path = "../src/testutil/standalone.rs"]
mod standalone;

use standalone::{dgram_pair, send, steady_allocs, Count};

const IP: &[u8] = &[
    0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2, 0, 8, 0, 0,
];

#[test]
fn unixsock_steady_state_does_not_allocate() {
    let dir = std::env::temp_dir().join(format!("rl-za-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let mut o = Options::defaults(&unixsock::OPTIONS).unwrap();
    o.set(&unixsock::OPTIONS[0], path.to_str().unwrap(), 1)
        .unwrap();
    let s = unixsock::Settings::from_options(&o).unwrap();
    let set = StatSet::new("t");
    let mut inp = UnixsockInput::open("t", &s, &set).unwrap();
    let mut c = UnixStream::connect(&path).unwrap();
    let mut em = Count::new(unixsock::NKEYS);
    // 10 messages, written in pieces that cut messages in the middle.
    let mut stream = Vec::new();
    for _ in 0..10 {
        encode(
            &mut stream,
            IP,
            &[(opt::PREFIX, b"p\0"), (opt::OOB_IN, b"lo\0")],
        );
    }
    let mut round = |inp: &mut UnixsockInput, em: &mut Count| {
        for piece in stream.chunks(333) {
            c.write_all(piece).unwrap();
            while inp.read(em).unwrap() == rulogd_plugin::ReadStatus::More {}
        }
    };
    let n = steady_allocs(5, 50, || round(&mut inp, &mut em));
    assert_eq!(em.n, 550);
    assert_eq!(n, 0, "{n} allocations for 500 messages");
    drop(inp);
    let _ = std::fs::remove_dir_all(&dir);
}

fn queued(id: u32) -> Vec<u8> {
    let mut v = Vec::new();
    let s = start_msg(&mut v, MSG_PACKET, 0, 0);
    v.extend_from_slice(&[2, 0, 0, 3]);
    let i = id.to_be_bytes();
    put_attr(&mut v, attr::PACKET_HDR, &[i[0], i[1], i[2], i[3], 8, 0, 1]);
    put_attr(&mut v, attr::PAYLOAD, IP);
    finish_msg(&mut v, s);
    v
}

#[test]
fn nfqueue_steady_state_does_not_allocate() {
    let (a, b) = dgram_pair();
    let o = Options::defaults(&nfqueue::OPTIONS).unwrap();
    let s = nfqueue::Settings::from_options(&o).unwrap();
    let set = StatSet::new("t");
    let mut inp = NfqueueInput::new("t", &s, NlSocket::from_fd(a), &set);
    let mut em = Count::new(nfqueue::NKEYS);
    let msgs: Vec<Vec<u8>> = (1..=20).map(queued).collect();
    let round = |inp: &mut NfqueueInput, em: &mut Count| {
        for m in &msgs {
            send(&b, m);
        }
        while inp.read(em).unwrap() == rulogd_plugin::ReadStatus::More {}
    };
    let n = steady_allocs(1, 20, || round(&mut inp, &mut em));
    assert_eq!(em.n, 420);
    assert_eq!(n, 0, "{n} allocations for 400 packets");
}
