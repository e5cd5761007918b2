//! Hand-built packets for the tests, one comment per field.

/// IPv4/UDP 127.0.0.1:48806 → 127.0.0.1:45678, the packet behind the JSON
/// line ulogd 2.0.8 printed in the research notes (same numbers expected).
pub(super) const UDP4: &[u8] = &[
    0x45, 0x00, // version 4, ihl 5; tos 0
    0x00, 0x24, // totlen 36
    0xb2, 0x5f, // id 45663
    0x40, 0x00, // DF, offset 0
    0x40, 0x11, // ttl 64; protocol UDP
    0x8a, 0x67, // header checksum 35431
    127, 0, 0, 1, // saddr
    127, 0, 0, 1, // daddr
    0xbe, 0xa6, // sport 48806
    0xb2, 0x6e, // dport 45678
    0x00, 0x10, // udp len 16
    0xfe, 0x23, // udp checksum 65059
    b'p', b'a', b'y', b'l', b'o', b'a', b'd', b'!', // 8 bytes of data
];

/// IPv4/TCP with URG, PSH, FIN, both ECN bits, a reserved bit and an option.
pub(super) const TCP4: &[u8] = &[
    0x45, 0x10, // version 4, ihl 5; tos 0x10
    0x00, 0x30, // totlen 48
    0x12, 0x34, // id
    0x00, 0x00, // no flags, offset 0
    0x40, 0x06, // ttl 64; protocol TCP
    0x00, 0x00, // header checksum (not checked)
    192, 168, 1, 2, // saddr
    10, 0, 0, 1, // daddr
    0x04, 0xd2, // sport 1234
    0x00, 0x50, // dport 80
    0x01, 0x02, 0x03, 0x04, // seq
    0x0a, 0x0b, 0x0c, 0x0d, // ack seq
    0x61, // data offset 6 words; reserved bits 0001
    0xe9, // CWR ECE URG . PSH . . FIN
    0xff, 0xff, // window 65535
    0xab, 0xcd, // checksum
    0x00, 0x07, // urgent pointer 7
    0x02, 0x04, 0x05, 0xb4, // option: MSS 1460
    b'd', b'a', b't', b'a', // 4 bytes of data
];

/// IPv4/ICMP echo request, id 1, seq 2.
pub(super) const ECHO4: &[u8] = &[
    0x45, 0x00, 0x00, 0x1c, // version, ihl, tos; totlen 28
    0x00, 0x01, 0x00, 0x00, // id 1; no fragment
    0x40, 0x01, 0x00, 0x00, // ttl 64; protocol ICMP; checksum
    10, 0, 0, 1, // saddr
    10, 0, 0, 2, // daddr
    0x08, 0x00, // type echo, code 0
    0xf7, 0xfc, // checksum (wire bytes f7 fc)
    0x00, 0x01, // identifier 1
    0x00, 0x02, // sequence 2
];

/// IPv4/ICMP redirect for host, gateway 192.168.1.254.
pub(super) const REDIRECT4: &[u8] = &[
    0x45, 0x00, 0x00, 0x38, 0x00, 0x02, 0x00, 0x00, // ip: totlen 56, id 2
    0x40, 0x01, 0x00, 0x00, // ttl 64; ICMP; checksum
    192, 168, 1, 1, // saddr
    192, 168, 1, 2, // daddr
    0x05, 0x01, // type redirect, code host
    0x12, 0x34, // checksum
    192, 168, 1, 254, // gateway
    0x45, 0x00, 0x00, 0x1c, // start of the quoted header (not decoded)
];

/// IPv4/ICMP destination unreachable, fragmentation needed, MTU 1500.
pub(super) const FRAGNEEDED4: &[u8] = &[
    0x45, 0x00, 0x00, 0x38, 0x00, 0x03, 0x00, 0x00, // ip: totlen 56, id 3
    0x40, 0x01, 0x00, 0x00, // ttl 64; ICMP; checksum
    10, 0, 0, 254, // saddr
    10, 0, 0, 1, // daddr
    0x03, 0x04, // type unreachable, code frag needed
    0x00, 0x00, // checksum
    0x00, 0x00, // unused
    0x05, 0xdc, // next-hop MTU 1500
];

/// IPv6/UDP 2001:db8::1 → 2001:db8::2, traffic class 0xab, flow 0xcdef1.
pub(super) const UDP6: &[u8] = &[
    0x6a, 0xbc, 0xde, 0xf1, // version 6, class 0xab, flow label 0xcdef1
    0x00, 0x10, // payload length 16
    17, 64, // next header UDP; hop limit 64
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // saddr
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // daddr
    0x13, 0x88, // sport 5000
    0x00, 0x35, // dport 53
    0x00, 0x10, // udp len 16
    0xbe, 0xef, // checksum
    0, 1, 2, 3, 4, 5, 6, 7, // 8 bytes of data
];

/// IPv6 with hop-by-hop options, then a fragment header, then UDP; the
/// fragment offset/flags bytes are at [`FRAG_OFFLG`].
pub(super) const FRAG6: &[u8] = &[
    0x60, 0x00, 0x00, 0x00, // version 6, class 0, flow 0
    0x00, 0x20, // payload length 32
    0, 255, // next header hop-by-hop; hop limit 255
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // saddr fe80::1
    0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // daddr ff02::1
    44, 0, // hop-by-hop: next header fragment; length 0 (8 bytes)
    0x01, 0x04, 0, 0, 0, 0, // PadN option, 4 bytes
    17, 0, // fragment: next header UDP; reserved
    0x00, 0x01, // offset 0, more fragments
    0xde, 0xad, 0xbe, 0xef, // identification
    0x00, 0x07, 0x00, 0x07, // sport 7, dport 7
    0x00, 0x10, 0x00, 0x00, // udp len 16, checksum 0
    0, 0, 0, 0, 0, 0, 0, 0, // data
];

/// Offset of the fragment offset/flags field in [`FRAG6`].
pub(super) const FRAG_OFFLG: usize = 50;

/// IPv6/ICMPv6 echo request, id 0x1234, seq 9.
pub(super) const ECHO6: &[u8] = &[
    0x60, 0x00, 0x00, 0x00, 0x00, 0x08, 58, 64, // ip6: plen 8, ICMPv6, hlim 64
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // saddr ::1
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // daddr ::1
    128, 0, // type echo request, code 0
    0x12, 0x34, // checksum (wire bytes 12 34)
    0x12, 0x34, // identifier
    0x00, 0x09, // sequence
];

/// IPv4/SCTP 2905 → 2906.
pub(super) const SCTP4: &[u8] = &[
    0x45, 0x00, 0x00, 0x20, 0x00, 0x04, 0x00, 0x00, // ip: totlen 32, id 4
    0x40, 132, 0x00, 0x00, // ttl 64; SCTP; checksum
    10, 0, 0, 1, // saddr
    10, 0, 0, 2, // daddr
    0x0b, 0x59, // sport 2905
    0x0b, 0x5a, // dport 2906
    0xaa, 0xbb, 0xcc, 0xdd, // verification tag
    0x12, 0x34, 0x56, 0x78, // CRC32c checksum
];

/// IPv4/ESP, SPI 0x1234.
pub(super) const ESP4: &[u8] = &[
    0x45, 0x00, 0x00, 0x20, 0x00, 0x05, 0x00, 0x00, // ip: totlen 32, id 5
    0x40, 50, 0x00, 0x00, // ttl 64; ESP; checksum
    10, 0, 0, 1, // saddr
    10, 0, 0, 2, // daddr
    0x00, 0x00, 0x12, 0x34, // SPI
    0x00, 0x00, 0x00, 0x01, // sequence number
    0xca, 0xfe, 0xca, 0xfe, // encrypted payload
];

/// IPv4/AH (then TCP, which ulogd does not decode in IPv4), SPI 0xabcdef01.
pub(super) const AH4: &[u8] = &[
    0x45, 0x00, 0x00, 0x2c, 0x00, 0x06, 0x00, 0x00, // ip: totlen 44, id 6
    0x40, 51, 0x00, 0x00, // ttl 64; AH; checksum
    10, 0, 0, 1, // saddr
    10, 0, 0, 2, // daddr
    6, 4, 0, 0, // next header TCP; length 4 (24 bytes); reserved
    0xab, 0xcd, 0xef, 0x01, // SPI
    0x00, 0x00, 0x00, 0x01, // sequence number
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ICV
];

/// IPv6/AH/TCP: the walk passes AH and decodes TCP (SYN).
pub(super) const AH6: &[u8] = &[
    0x60, 0x00, 0x00, 0x00, 0x00, 0x2c, 51, 64, // ip6: plen 44, AH, hlim 64
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // saddr ::1
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // daddr ::2
    6, 4, 0, 0, // AH: next header TCP; length 4 (24 bytes); reserved
    0x00, 0x00, 0x01, 0x00, // SPI 256
    0x00, 0x00, 0x00, 0x01, // sequence number
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ICV
    0x00, 0x16, 0x00, 0x17, // TCP: sport 22, dport 23
    0, 0, 0, 1, 0, 0, 0, 0, // seq 1, ack 0
    0x50, 0x02, 0x10, 0x00, // offset 5, SYN; window 4096
    0x00, 0x00, 0x00, 0x00, // checksum, urgent pointer
];

/// IPv6/ESP with the given second SPI byte (which ulogd takes for a length).
pub(super) fn esp6(spi_byte1: u8) -> Vec<u8> {
    let mut p = vec![
        0x60, 0x00, 0x00, 0x00, 0x00, 0x10, 50, 64, // ip6: plen 16, ESP, hlim 64
    ];
    p.extend_from_slice(&[0; 15]);
    p.push(1); // saddr ::1
    p.extend_from_slice(&[0; 15]);
    p.push(2); // daddr ::2
    p.extend_from_slice(&[0x00, spi_byte1, 0x00, 0x07]); // SPI
    p.extend_from_slice(&[0, 0, 0, 1]); // sequence number
    p.extend_from_slice(&[0xee; 8]); // encrypted payload
    p
}

/// ARP request: who has 192.168.1.1? tell 192.168.1.2 (52:54:00:12:34:56).
pub(super) const ARP: &[u8] = &[
    0x00, 0x01, // hardware type Ethernet
    0x08, 0x00, // protocol type IPv4
    6, 4, // hardware / protocol address lengths
    0x00, 0x01, // operation request
    0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // sender hardware address
    192, 168, 1, 2, // sender protocol address
    0, 0, 0, 0, 0, 0, // target hardware address
    192, 168, 1, 1, // target protocol address
];
