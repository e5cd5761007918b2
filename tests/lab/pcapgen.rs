//! A capture file written byte by byte with flows the test knows: Ethernet
//! frames (optionally 802.1Q/802.1ad tagged) of IPv4 and IPv6 TCP and UDP,
//! fragments, cut at a snap length like `tcpdump -s`. No fetched files:
//! every byte is made here.

use std::net::IpAddr;

/// TCP flags.
pub mod tcp {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// What a packet carries above IP.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    /// TCP with these flags and payload bytes.
    Tcp { flags: u8, len: usize },
    /// UDP with this many payload bytes.
    Udp { len: usize },
}

/// A pcap file being built (microsecond timestamps, Ethernet).
pub struct Pcap {
    buf: Vec<u8>,
    snaplen: usize,
    ip_id: u16,
    seq: u32,
}

fn sum16(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// One side's address and port.
pub type End = (IpAddr, u16);

impl Pcap {
    /// An empty file whose frames are cut at `snaplen` bytes.
    pub fn new(snaplen: usize) -> Pcap {
        let mut buf = Vec::new();
        buf.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        buf.extend_from_slice(&2u16.to_le_bytes());
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&[0; 8]);
        buf.extend_from_slice(&(snaplen as u32).to_le_bytes());
        buf.extend_from_slice(&1u32.to_le_bytes());
        Pcap {
            buf,
            snaplen,
            ip_id: 1,
            seq: 1000,
        }
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Appends one frame at `usec` microseconds since the epoch.
    pub fn frame(&mut self, usec: u64, frame: &[u8]) {
        let cap = frame.len().min(self.snaplen);
        let b = &mut self.buf;
        b.extend_from_slice(&((usec / 1_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&((usec % 1_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&(cap as u32).to_le_bytes());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(&frame[..cap]);
    }

    /// The layer-4 header and payload from `src` to `dst`.
    fn l4(&mut self, src: End, dst: End, l4: L4) -> (u8, Vec<u8>) {
        let mut v = Vec::new();
        v.extend_from_slice(&src.1.to_be_bytes());
        v.extend_from_slice(&dst.1.to_be_bytes());
        match l4 {
            L4::Tcp { flags, len } => {
                self.seq = self.seq.wrapping_add(7919);
                v.extend_from_slice(&self.seq.to_be_bytes());
                let ack = if flags & tcp::ACK != 0 {
                    self.seq ^ 0x5555
                } else {
                    0
                };
                v.extend_from_slice(&ack.to_be_bytes());
                v.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
                v.resize(v.len() + len, b'd');
                (6, v)
            }
            L4::Udp { len } => {
                v.extend_from_slice(&((8 + len) as u16).to_be_bytes());
                v.extend_from_slice(&[0, 0]);
                v.resize(v.len() + len, b'u');
                (17, v)
            }
        }
    }

    /// The layer-4 checksum over the pseudo-header, put in place.
    fn checksum(proto: u8, src: IpAddr, dst: IpAddr, seg: &mut [u8]) {
        let mut pseudo = Vec::new();
        for a in [src, dst] {
            match a {
                IpAddr::V4(a) => pseudo.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => pseudo.extend_from_slice(&a.octets()),
            }
        }
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        let at = if proto == 6 { 16 } else { 6 };
        seg[at] = 0;
        seg[at + 1] = 0;
        let mut c = fold(sum16(&pseudo) + sum16(seg));
        if proto == 17 && c == 0 {
            c = 0xffff;
        }
        seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }

    fn ether(vlans: &[u16], ethertype: u16, ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
        for (i, v) in vlans.iter().enumerate() {
            // QinQ: the outer tag is 802.1ad's, the inner 802.1Q's.
            let tpid: u16 = if i + 1 < vlans.len() { 0x88a8 } else { 0x8100 };
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&v.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    fn ipv4(&self, proto: u8, src: IpAddr, dst: IpAddr, id: u16, frag: u16, pl: &[u8]) -> Vec<u8> {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
            panic!("IPv4 addresses");
        };
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&((20 + pl.len()) as u16).to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0]);
        h.extend_from_slice(&s.octets());
        h.extend_from_slice(&d.octets());
        let c = fold(sum16(&h));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(pl);
        h
    }

    fn ipv6(next: u8, src: IpAddr, dst: IpAddr, pl: &[u8]) -> Vec<u8> {
        let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
            panic!("IPv6 addresses");
        };
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(pl.len() as u16).to_be_bytes());
        h.extend_from_slice(&[next, 64]);
        h.extend_from_slice(&s.octets());
        h.extend_from_slice(&d.octets());
        h.extend_from_slice(pl);
        h
    }

    /// One packet from `src` to `dst` on `vlans` (outermost first), in
    /// fragments of at most `frag` bytes of IP payload (0: never).
    /// Returns the IP bytes of each frame (what FLOW counts).
    pub fn packet(
        &mut self,
        usec: u64,
        vlans: &[u16],
        src: End,
        dst: End,
        l4: L4,
        frag: usize,
    ) -> Vec<u64> {
        let frames = self.frames(vlans, src, dst, l4, frag);
        let mut sizes = Vec::new();
        for (i, (f, ip_len)) in frames.into_iter().enumerate() {
            sizes.push(ip_len);
            self.frame(usec + i as u64, &f);
        }
        sizes
    }

    /// The Ethernet frames of one packet (see [`Pcap::packet`]), each with
    /// its IP length, not written to the file: for a raw socket.
    pub fn frames(
        &mut self,
        vlans: &[u16],
        src: End,
        dst: End,
        l4: L4,
        frag: usize,
    ) -> Vec<(Vec<u8>, u64)> {
        let (proto, mut seg) = self.l4(src, dst, l4);
        Self::checksum(proto, src.0, dst.0, &mut seg);
        self.ip_id = self.ip_id.wrapping_add(1);
        let id = self.ip_id;
        let v4 = src.0.is_ipv4();
        let pieces: Vec<&[u8]> = if frag == 0 || seg.len() <= frag {
            vec![&seg]
        } else {
            seg.chunks(frag / 8 * 8).collect()
        };
        let n = pieces.len();
        let mut out = Vec::new();
        let mut off = 0usize;
        for (i, p) in pieces.into_iter().enumerate() {
            let more = i + 1 < n;
            let ip = if v4 {
                let f = (off / 8) as u16 | if more { 0x2000 } else { 0 };
                let f = if n == 1 { 0x4000 } else { f };
                self.ipv4(proto, src.0, dst.0, id, f, p)
            } else if n == 1 {
                Self::ipv6(proto, src.0, dst.0, p)
            } else {
                let mut fh = vec![proto, 0];
                let fo = (off as u16) | u16::from(more);
                fh.extend_from_slice(&fo.to_be_bytes());
                fh.extend_from_slice(&(0x0001_0000u32 + u32::from(id)).to_be_bytes());
                fh.extend_from_slice(p);
                Self::ipv6(44, src.0, dst.0, &fh)
            };
            off += p.len();
            let ethertype = if v4 { 0x0800 } else { 0x86dd };
            let len = ip.len() as u64;
            out.push((Self::ether(vlans, ethertype, &ip), len));
        }
        out
    }
}

/// The first packet's time of [`mixed_flows`] (2020-09-13), in µs.
pub const MIXED_T0: u64 = 1_600_000_000_000_000;
const SEC: u64 = 1_000_000;

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

/// The `[cap1]`, `[flow1]` and `[json1]` sections with which the SQL and
/// ClickHouse flow tests read [`mixed_flows`]'s file `{PCAP}` into FLOW
/// (home network 10.1.0.0/16, start records, 1 s timeouts) and JSON
/// `{JSON}`; as one literal for `concat!`.
#[macro_export]
macro_rules! conf_mixed_flows {
    () => {
        "[cap1]\nfile=\"{PCAP}\"\n\n\
         [flow1]\nhome_net=\"10.1.0.0/16\"\nactive_timeout=1\ntcp_linger=1\nstart_records=1\n\n\
         [json1]\nfile=\"{JSON}\"\n"
    };
}

/// The flows the SQL and ClickHouse flow tests store: a TCP session with
/// FIN, a long UDP exchange (updates), an IPv6 UDP flow on VLAN 7, and a
/// one-packet flow that ends the file 4 s later; written to `path`.
pub fn mixed_flows(path: &std::path::Path) {
    let mut p = Pcap::new(65535);
    let (c, s) = ((ip("10.1.0.5"), 40000), (ip("93.184.216.34"), 443));
    let tcp = |flags, len| L4::Tcp { flags, len };
    let a = tcp::ACK;
    for (i, (fwd, l4)) in [
        (true, tcp(tcp::SYN, 0)),
        (false, tcp(tcp::SYN | a, 0)),
        (true, tcp(a | tcp::PSH, 700)),
        (false, tcp(a, 0)),
        (true, tcp(tcp::FIN | a, 0)),
        (false, tcp(tcp::FIN | a, 0)),
        (true, tcp(a, 0)),
    ]
    .into_iter()
    .enumerate()
    {
        let (src, dst) = if fwd { (c, s) } else { (s, c) };
        p.packet(MIXED_T0 + i as u64 * 1000, &[], src, dst, l4, 0);
    }
    let (c, s) = ((ip("10.1.0.5"), 5353), (ip("10.1.0.9"), 53));
    for i in 0..4u64 {
        let t = MIXED_T0 + i * 700_000;
        p.packet(
            t,
            &[],
            c,
            s,
            L4::Udp {
                len: 30 + i as usize,
            },
            0,
        );
        p.packet(t + 500, &[], s, c, L4::Udp { len: 200 }, 0);
    }
    let (c6, s6) = ((ip("2001:db8:5::1"), 9000), (ip("2001:db8:6::1"), 9001));
    p.packet(MIXED_T0 + SEC, &[7], c6, s6, L4::Udp { len: 10 }, 0);
    p.packet(MIXED_T0 + SEC + 10, &[7], s6, c6, L4::Udp { len: 1000 }, 0);
    let (c, s) = ((ip("198.51.100.1"), 1234), (ip("10.1.0.2"), 80));
    p.packet(MIXED_T0 + 4 * SEC, &[], c, s, tcp(tcp::SYN, 0), 0);
    std::fs::write(path, p.bytes()).unwrap();
}
