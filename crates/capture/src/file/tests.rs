//! Files built byte by byte: each format variant, chunked reading, and every
//! kind of damage.

use super::*;

fn pcap(big: bool, nanos: bool, linktype: u32, recs: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
    let w32 = |v: &mut Vec<u8>, x: u32| {
        v.extend_from_slice(&if big {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    let w16 = |v: &mut Vec<u8>, x: u16| {
        v.extend_from_slice(&if big {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    let mut v = Vec::new();
    w32(&mut v, if nanos { PCAP_NS } else { PCAP_US });
    w16(&mut v, 2);
    w16(&mut v, 4);
    w32(&mut v, 0);
    w32(&mut v, 0);
    w32(&mut v, 65535);
    w32(&mut v, linktype);
    for &(sec, frac, data, orig) in recs {
        w32(&mut v, sec);
        w32(&mut v, frac);
        w32(&mut v, data.len() as u32);
        w32(&mut v, orig);
        v.extend_from_slice(data);
    }
    v
}

/// A pcapng block of `btype` with `body` (padded), little-endian.
fn block(btype: u32, body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
    let total = (b.len() + 12) as u32;
    let mut v = btype.to_le_bytes().to_vec();
    v.extend_from_slice(&total.to_le_bytes());
    v.extend_from_slice(&b);
    v.extend_from_slice(&total.to_le_bytes());
    v
}

fn shb() -> Vec<u8> {
    let mut body = BYTE_ORDER.to_le_bytes().to_vec();
    body.extend_from_slice(&[1, 0, 0, 0]);
    body.extend_from_slice(&u64::MAX.to_le_bytes());
    block(SHB, &body)
}

fn idb(linktype: u16, tsresol: Option<u8>) -> Vec<u8> {
    let mut body = linktype.to_le_bytes().to_vec();
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&262_144u32.to_le_bytes());
    if let Some(r) = tsresol {
        body.extend_from_slice(&9u16.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&[r, 0, 0, 0]);
        body.extend_from_slice(&[0, 0, 0, 0]);
    }
    block(1, &body)
}

fn epb(iface: u32, ts: u64, data: &[u8], orig: u32) -> Vec<u8> {
    let mut body = iface.to_le_bytes().to_vec();
    body.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(ts as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&orig.to_le_bytes());
    body.extend_from_slice(data);
    block(6, &body)
}

#[test]
fn pcap_in_both_byte_orders_and_resolutions() {
    for (big, nanos) in [(false, false), (true, false), (false, true), (true, true)] {
        let f = pcap(
            big,
            nanos,
            1,
            &[(100, 5, b"abcd", 60), (101, 999, b"xy", 2)],
        );
        let pk = parse_all(&f).unwrap();
        assert_eq!(pk.len(), 2);
        assert_eq!(
            (pk[0].sec, pk[0].caplen, pk[0].origlen, pk[0].linktype),
            (100, 4, 60, 1)
        );
        assert_eq!(pk[0].nsec, if nanos { 5 } else { 5000 });
        assert_eq!(&f[pk[1].data_off..pk[1].data_off + 2], b"xy");
    }
}

#[test]
fn pcapng_interfaces_resolutions_and_skipped_blocks() {
    let mut f = shb();
    f.extend(idb(1, None));
    f.extend(idb(101, Some(9)));
    f.extend(idb(113, Some(0x80 | 10)));
    f.extend(block(5, &[0; 16])); // interface statistics: skipped
    f.extend(epb(0, 1_500_000_123, b"eth", 3));
    f.extend(epb(1, 2_000_000_000_500, b"ip", 9));
    f.extend(epb(2, 3 * 1024 + 512, b"sll", 3));
    let pk = parse_all(&f).unwrap();
    assert_eq!(pk.len(), 3);
    assert_eq!((pk[0].sec, pk[0].nsec, pk[0].linktype), (1500, 123_000, 1));
    assert_eq!(
        (pk[1].sec, pk[1].nsec, pk[1].linktype, pk[1].origlen),
        (2000, 500, 101, 9)
    );
    assert_eq!(
        (pk[2].sec, pk[2].nsec, pk[2].interface),
        (3, 500_000_000, Some(2))
    );
    assert_eq!(&f[pk[1].data_off..pk[1].data_off + 2], b"ip");
}

#[test]
fn a_second_section_resets_the_interfaces() {
    let mut f = shb();
    f.extend(idb(1, None));
    f.extend(idb(1, None));
    f.extend(shb());
    f.extend(idb(101, None));
    f.extend(epb(0, 0, b"\x45", 1));
    assert_eq!(parse_all(&f).unwrap()[0].linktype, 101);
    f.extend(epb(1, 0, b"\x45", 1));
    let e = parse_all(&f).unwrap_err();
    assert!(
        e.to_string()
            .contains("interface 1, which no block described"),
        "{e}"
    );
}

#[test]
fn fed_a_byte_at_a_time_the_parser_asks_for_more_and_agrees() {
    let f = pcap(false, false, 1, &[(1, 2, b"hello", 5), (3, 4, b"w", 1)]);
    let whole = parse_all(&f).unwrap();
    let (mut p, mut at) = (None, 0);
    let mut got = Vec::new();
    let mut end = 1;
    while end <= f.len() {
        let buf = &f[at..end];
        match &mut p {
            None => {
                if let Some((parser, used)) = Parser::start(buf).unwrap() {
                    p = Some(parser);
                    at += used;
                }
            }
            Some(parser) => match parser.next(buf).unwrap() {
                Next::Packet { mut pkt, consumed } => {
                    pkt.data_off += at;
                    got.push(pkt);
                    at += consumed;
                    continue;
                }
                Next::Skip { consumed } => {
                    at += consumed;
                    continue;
                }
                Next::NeedMore { need } => assert!(need > buf.len()),
            },
        }
        end += 1;
    }
    assert_eq!(got, whole);
}

#[test]
fn damage_is_an_error_with_its_offset() {
    let err = |f: &[u8]| parse_all(f).unwrap_err().to_string();
    assert!(err(b"GIF89a.........................")
        .contains("not a pcap or pcapng file: magic 0x47494638"));
    let mut f = pcap(false, false, 1, &[(1, 0, b"abcdef", 6)]);
    f.truncate(f.len() - 2);
    assert_eq!(
        err(&f),
        "truncated at byte 24: a pcap record needs 22 bytes, 20 left"
    );
    let mut f = pcap(false, false, 1, &[]);
    f.extend_from_slice(&[0, 0, 0, 0, 0x40, 0x42, 0x0f, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9]);
    assert!(
        err(&f).contains("at byte 24: timestamp fraction 1000000"),
        "{}",
        err(&f)
    );
    let mut f = pcap(false, false, 1, &[]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
    assert!(
        err(&f).contains("captured length 2147483647 larger than"),
        "{}",
        err(&f)
    );
    let mut f = shb();
    let at = f.len();
    f.extend(epb(0, 0, b"x", 1));
    assert!(
        err(&f).contains(&format!("byte {at}: packet of interface 0")),
        "{}",
        err(&f)
    );
    let mut f = shb();
    f.extend(idb(1, None));
    let mut b = epb(0, 0, b"abcd", 4);
    b[20] = 200; // captured length past the block
    f.extend(b);
    assert!(
        err(&f).contains("captured length 200 runs past its block"),
        "{}",
        err(&f)
    );
    let mut f = shb();
    f.extend_from_slice(&[6, 0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(err(&f).contains("block length 13"), "{}", err(&f));
    let mut f = pcap(false, false, 1, &[]);
    f[4] = 3;
    assert!(err(&f).contains("pcap version 3"), "{}", err(&f));
}

#[test]
fn replays_the_fuzz_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fuzz/corpus/capture_file");
    let mut seeds = 0;
    for e in std::fs::read_dir(&dir).expect("the capture_file corpus") {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        let r = parse_all(&data);
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("seed-")
        {
            let pkts = r.unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(!pkts.is_empty(), "{}", p.display());
            for k in &pkts {
                let frame = &data[k.data_off..k.data_off + k.caplen as usize];
                assert!(
                    crate::decode(k.linktype, frame).is_some(),
                    "{}",
                    p.display()
                );
            }
            seeds += 1;
        }
    }
    assert!(seeds >= 4);
}
