//! Synthetic capture files for the flow benchmarks: N flows, each with the
//! same number of packets, TCP and UDP mixed, sizes like a real link's
//! (full-size server data, small client ACKs and requests), from a fixed
//! seed so every run and every machine reads the same bytes.
//!
//! Packet k of every flow lies in the k-th of n equal segments of the file
//! (the flows shuffled within each segment), so every flow is open from the
//! first segment to the last: the number of flows a tool tracks at its peak
//! is exactly N, which the memory-per-flow figure divides by.

use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Bytes of each packet kept in the file (a header-only sensor capture);
/// the IP length fields still give the packets' full sizes.
pub const SNAPLEN: usize = 128;
/// Time of the first packet: 2026-01-01 00:00:00 UTC.
pub const T0_SEC: u64 = 1_767_225_600;
/// Time between packets, µs: 1M packets span 10 s, less than every idle
/// timeout, so no flow ends before the file does.
pub const GAP_USEC: u64 = 10;

/// What a generated file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Packets written.
    pub packets: u64,
    /// Flows (bidirectional 5-tuples).
    pub flows: u64,
    /// Sum of the IP total lengths.
    pub ip_bytes: u64,
    /// TCP flows among them.
    pub tcp_flows: u64,
}

/// SplitMix64: tiny, fast, and the same on every platform.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the bias is negligible for small n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

struct FlowSpec {
    tcp: bool,
    client: [u8; 4],
    server: [u8; 4],
    cport: u16,
    sport: u16,
}

fn flow_spec(i: u32, rng: &mut Rng) -> FlowSpec {
    let tcp = rng.below(10) < 7;
    let server_port = if tcp {
        [443, 443, 443, 443, 443, 443, 80, 80, 22, 8080][rng.below(10) as usize]
    } else {
        [53, 53, 53, 53, 123, 443, 443, 5060, 514, 161][rng.below(10) as usize]
    };
    let server = if rng.below(2) == 0 {
        [192, 0, 2, 1 + rng.below(250) as u8]
    } else {
        [198, 51, 100, 1 + rng.below(250) as u8]
    };
    FlowSpec {
        tcp,
        // The flow number in the client address makes every 5-tuple unique.
        client: [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
        server,
        cport: 1024 + rng.below(64_000) as u16,
        sport: server_port,
    }
}

/// One packet: (from the client?, TCP flags or 0, IP total length).
fn packet_shape(f: &FlowSpec, k: u32, n: u32, rng: &mut Rng) -> (bool, u8, u16) {
    const FIN: u8 = 1;
    const SYN: u8 = 2;
    const PSH: u8 = 8;
    const ACK: u8 = 16;
    if !f.tcp {
        // Request, response, request, …: DNS-, NTP- and QUIC-like sizes.
        return if k % 2 == 0 {
            (true, 0, 40 + rng.below(260) as u16)
        } else {
            (false, 0, 80 + rng.below(1120) as u16)
        };
    }
    match k {
        0 => (true, SYN, 60),
        1 => (false, SYN | ACK, 60),
        2 => (true, ACK, 40),
        _ if n >= 6 && k == n - 2 => (true, FIN | ACK, 40),
        _ if n >= 6 && k == n - 1 => (false, FIN | ACK, 40),
        _ if rng.below(100) < 65 => {
            let len = if rng.below(10) < 8 {
                1500
            } else {
                100 + rng.below(1400) as u16
            };
            (false, PSH | ACK, len)
        }
        _ if rng.below(10) < 7 => (true, ACK, 40),
        _ => (true, PSH | ACK, 100 + rng.below(600) as u16),
    }
}

fn checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Fills `buf` with the Ethernet frame (cut at [`SNAPLEN`]) of one packet.
fn frame(buf: &mut Vec<u8>, f: &FlowSpec, from_client: bool, flags: u8, iplen: u16, seq: u32) {
    buf.clear();
    let (src, dst, sp, dp) = if from_client {
        (f.client, f.server, f.cport, f.sport)
    } else {
        (f.server, f.client, f.sport, f.cport)
    };
    let (mac_c, mac_s) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let (smac, dmac) = if from_client {
        (mac_c, mac_s)
    } else {
        (mac_s, mac_c)
    };
    buf.extend_from_slice(&dmac);
    buf.extend_from_slice(&smac);
    buf.extend_from_slice(&[0x08, 0x00]);
    let ip = buf.len();
    let proto = if f.tcp { 6 } else { 17 };
    buf.extend_from_slice(&[0x45, 0]);
    buf.extend_from_slice(&iplen.to_be_bytes());
    buf.extend_from_slice(&(seq as u16).to_be_bytes());
    buf.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&dst);
    let c = checksum(&buf[ip..ip + 20]);
    buf[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    buf.extend_from_slice(&sp.to_be_bytes());
    buf.extend_from_slice(&dp.to_be_bytes());
    if f.tcp {
        // SYNs carry 20 bytes of options (zeros: end of options), as a
        // real SYN's MSS, SACK, timestamps and window scale would.
        let doff: u8 = if flags & 2 != 0 { 10 } else { 5 };
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.extend_from_slice(&seq.wrapping_mul(7).to_be_bytes());
        buf.extend_from_slice(&[doff << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        buf.extend_from_slice(&(iplen - 20).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
    }
    let wire = 14 + iplen as usize;
    buf.resize(wire.min(SNAPLEN).max(buf.len()), 0);
    buf.truncate(wire.min(SNAPLEN));
}

/// Writes `flows` flows of `packets / flows` packets each (at least 2) to
/// `path` as a microsecond pcap of Ethernet frames.
pub fn write(path: &Path, packets: u64, flows: u64, seed: u64) -> io::Result<Summary> {
    let flows = flows.max(1);
    let per_flow = (packets / flows).max(2) as u32;
    let mut rng = Rng::new(seed);
    let specs: Vec<FlowSpec> = (0..flows as u32).map(|i| flow_spec(i, &mut rng)).collect();
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut hdr = Vec::with_capacity(24);
    hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    hdr.extend_from_slice(&2u16.to_le_bytes());
    hdr.extend_from_slice(&4u16.to_le_bytes());
    hdr.extend_from_slice(&[0; 8]);
    hdr.extend_from_slice(&(SNAPLEN as u32).to_le_bytes());
    hdr.extend_from_slice(&1u32.to_le_bytes());
    out.write_all(&hdr)?;
    let mut order: Vec<u32> = (0..flows as u32).collect();
    let mut buf = Vec::with_capacity(SNAPLEN);
    let mut s = Summary {
        packets: 0,
        flows,
        ip_bytes: 0,
        tcp_flows: specs.iter().filter(|f| f.tcp).count() as u64,
    };
    for k in 0..per_flow {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for &fi in &order {
            let f = &specs[fi as usize];
            let (from_client, flags, iplen) = packet_shape(f, k, per_flow, &mut rng);
            frame(&mut buf, f, from_client, flags, iplen, s.packets as u32);
            let t = T0_SEC * 1_000_000 + s.packets * GAP_USEC;
            out.write_all(&((t / 1_000_000) as u32).to_le_bytes())?;
            out.write_all(&((t % 1_000_000) as u32).to_le_bytes())?;
            out.write_all(&(buf.len() as u32).to_le_bytes())?;
            out.write_all(&(14 + u32::from(iplen)).to_le_bytes())?;
            out.write_all(&buf)?;
            s.packets += 1;
            s.ip_bytes += u64::from(iplen);
        }
    }
    out.flush()?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_the_same_every_time_and_holds_what_it_says() {
        let d = std::env::temp_dir().join(format!("pcapgen-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (a, b) = (d.join("a.pcap"), d.join("b.pcap"));
        let sa = write(&a, 1000, 10, 7).unwrap();
        let sb = write(&b, 1000, 10, 7).unwrap();
        assert_eq!(sa, sb);
        assert_eq!((sa.packets, sa.flows), (1000, 10));
        let (fa, fb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(fa, fb);
        // Header, then per packet a 16-byte record header and the frame.
        let mut at = 24;
        let mut n = 0;
        while at < fa.len() {
            let cap = u32::from_le_bytes(fa[at + 8..at + 12].try_into().unwrap()) as usize;
            let wire = u32::from_le_bytes(fa[at + 12..at + 16].try_into().unwrap()) as usize;
            assert!(cap <= SNAPLEN && cap <= wire, "{cap} {wire}");
            let ip = &fa[at + 16 + 14..];
            assert_eq!(checksum(&ip[..20]), 0, "IP header checksum");
            assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize + 14, wire);
            at += 16 + cap;
            n += 1;
        }
        assert_eq!(n, 1000);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
