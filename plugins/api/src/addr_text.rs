//! IP addresses as text, exactly as glibc's `inet_ntop` writes them, into a
//! fixed buffer: IP2STR stores that text in a key and the text outputs
//! print it, so both spell every address the same way, without allocating.

/// INET6_ADDRSTRLEN: room for the longest IPv6 text and a NUL.
pub const LEN: usize = 46;

/// The buffer the text is written into. The caller owns it, so the text is
/// read straight from where it was written: returning it by value instead
/// copied it while the byte-wide stores were still in flight, which made
/// IP2STR measurably slower.
pub type AddrBuf = [u8; LEN];

/// The decimal text of every byte value: up to three digits, zero-filled
/// after them, and the digit count in the last byte.
static DEC: [[u8; 4]; 256] = {
    let mut t = [[0u8; 4]; 256];
    let mut v = 0;
    while v < 256 {
        let (h, d, o) = ((v / 100) as u8, (v / 10 % 10) as u8, (v % 10) as u8);
        t[v] = if v >= 100 {
            [b'0' + h, b'0' + d, b'0' + o, 3]
        } else if v >= 10 {
            [b'0' + d, b'0' + o, 0, 2]
        } else {
            [b'0' + o, 0, 0, 1]
        };
        v += 1;
    }
    t
};

/// Appends the decimal digits of `v`.
#[inline]
fn push_dec(buf: &mut [u8; LEN], n: &mut usize, v: u8) {
    let d = &DEC[v as usize];
    // Always three bytes (one fixed-size copy), counting only the digits;
    // every caller leaves room for three more bytes.
    buf[*n..*n + 3].copy_from_slice(&d[..3]);
    *n += d[3] as usize;
}

/// Appends the lowercase hex digits of `v`, without leading zeros.
fn push_hex(buf: &mut [u8; LEN], n: &mut usize, v: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut started = false;
    for shift in [12u32, 8, 4, 0] {
        let d = usize::from((v >> shift) & 0xf);
        if d != 0 || started || shift == 0 {
            started = true;
            buf[*n] = HEX[d];
            *n += 1;
        }
    }
}

/// Appends `a.b.c.d`.
fn push_v4(buf: &mut [u8; LEN], n: &mut usize, a: [u8; 4]) {
    for (i, &o) in a.iter().enumerate() {
        if i > 0 {
            buf[*n] = b'.';
            *n += 1;
        }
        push_dec(buf, n, o);
    }
}

/// IPv4 dotted quad (at most 15 bytes, so the fixed buffer always fits).
#[inline]
pub fn ipv4_text(a: [u8; 4], buf: &mut AddrBuf) -> &[u8] {
    let mut n = 0;
    push_v4(buf, &mut n, a);
    &buf[..n]
}

/// IPv6 text exactly as glibc's `inet_ntop` writes it: the first longest run
/// of two or more zero groups becomes `::`, and an address whose first 96
/// bits are zero (with a non-zero 7th group) or that is IPv4-mapped ends in
/// a dotted quad. std's `Display` differs on the former (`::102:304` where
/// glibc writes `::1.2.3.4`), hence this. At most 45 bytes, which fits.
pub fn ipv6_text(a: [u8; 16], buf: &mut AddrBuf) -> &[u8] {
    let w: [u16; 8] = std::array::from_fn(|i| u16::from_be_bytes([a[2 * i], a[2 * i + 1]]));
    // The first longest run of zeros, if at least two groups long.
    let (mut best, mut best_len, mut cur, mut cur_len) = (0, 0, 0, 0);
    for (i, &g) in w.iter().enumerate() {
        if g == 0 {
            if cur_len == 0 {
                cur = i;
            }
            cur_len += 1;
            if cur_len > best_len {
                best = cur;
                best_len = cur_len;
            }
        } else {
            cur_len = 0;
        }
    }
    let run = if best_len >= 2 {
        best..best + best_len
    } else {
        0..0
    };
    let mut n = 0;
    let mut i = 0;
    while i < 8 {
        if run.contains(&i) {
            if i == run.start {
                buf[n] = b':';
                n += 1;
            }
            i += 1;
            continue;
        }
        if i != 0 {
            buf[n] = b':';
            n += 1;
        }
        if i == 6 && run.start == 0 && (run.len() == 6 || (run.len() == 5 && w[5] == 0xffff)) {
            push_v4(buf, &mut n, [a[12], a[13], a[14], a[15]]);
            return &buf[..n];
        }
        push_hex(buf, &mut n, w[i]);
        i += 1;
    }
    if !run.is_empty() && run.end == 8 {
        buf[n] = b':';
        n += 1;
    }
    &buf[..n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    // libc (the crate) does not bind inet_ntop; glibc has it.
    extern "C" {
        fn inet_ntop(
            af: libc::c_int,
            src: *const libc::c_void,
            dst: *mut libc::c_char,
            size: libc::socklen_t,
        ) -> *const libc::c_char;
    }

    /// What glibc's inet_ntop writes for `a` (4 or 16 bytes).
    fn ntop(a: &[u8]) -> String {
        let af = if a.len() == 4 {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let mut buf = [0 as libc::c_char; 64];
        // SAFETY: `a` holds an address of the family's size and `buf` is
        // larger than INET6_ADDRSTRLEN.
        let p = unsafe { inet_ntop(af, a.as_ptr().cast(), buf.as_mut_ptr(), 64) };
        assert!(!p.is_null());
        let n = buf.iter().position(|&c| c == 0).unwrap_or(0);
        buf[..n].iter().map(|&c| c as u8 as char).collect()
    }

    fn s(v: &[u8]) -> String {
        String::from_utf8(v.to_vec()).expect("ascii")
    }

    #[test]
    fn v6_text_equals_inet_ntop_on_edge_cases() {
        let cases = [
            "::",
            "::1",
            "::2",
            "1::",
            "::ffff:1.2.3.4",
            "::ffff:0.0.0.0",
            "::ffff:0.0.1.2",
            "::1.2.3.4",
            "::0.1.2.3",
            "::ffff:0:1.2.3.4",
            "0:0:0:0:1:ffff:102:304",
            "1:0:0:1::",
            "1::1:0:0:1",
            "1:0:0:2:0:0:0:3",
            "1:0:2:0:3:0:4:0",
            "0:1:0:1:0:1:0:1",
            "2001:db8::1",
            "2001:db8:0:0:1:0:0:1",
            "fe80::1:2:3:4",
            "ff02::1:ff00:1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "64:ff9b::102:304",
            "::ffff:255.255.255.255",
            "1:2:3:4:5:6:7:0",
            "0:1:2:3:4:5:6:7",
            "::2:3",
            "1:0:0:2::3",
            "1::2:0:0:3",
            "2001:db8::8:800:200c:417a",
            "0:1:0:0:1:0:0:0",
            "0:0:1::",
            "::fffe:1.2.3.4",
            "1:0:0:0:0:0:0:0",
        ];
        for c in cases {
            let a: Ipv6Addr = c.parse().expect("test address");
            assert_eq!(
                s(ipv6_text(a.octets(), &mut [0; LEN])),
                ntop(&a.octets()),
                "{c}"
            );
        }
    }

    #[test]
    fn v6_text_equals_inet_ntop_on_random_addresses() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly zero groups, so every run layout shows up.
            let mut a = [0u8; 16];
            for g in 0..8 {
                let r = (x >> (g * 8)) as u8;
                let word: u16 = match r % 8 {
                    0..=3 => 0,
                    4 => 0xffff,
                    5 => u16::from(r),
                    _ => (x >> (g * 5)) as u16,
                };
                a[2 * g..2 * g + 2].copy_from_slice(&word.to_be_bytes());
            }
            assert_eq!(s(ipv6_text(a, &mut [0; LEN])), ntop(&a), "{a:02x?}");
        }
    }

    #[test]
    fn v4_text_equals_inet_ntop() {
        for a in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [10, 0, 100, 9],
            [1, 22, 133, 4],
        ] {
            assert_eq!(s(ipv4_text(a, &mut [0; LEN])), ntop(&a));
        }
        // Every byte value in every position (the digit table).
        for v in 0..=255u8 {
            for a in [[v, 0, 0, 0], [1, v, 22, 0], [0, 9, v, 100], [7, 7, 7, v]] {
                assert_eq!(s(ipv4_text(a, &mut [0; LEN])), ntop(&a));
            }
        }
        let mut x: u32 = 0x1234_5678;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let a = x.to_be_bytes();
            assert_eq!(s(ipv4_text(a, &mut [0; LEN])), ntop(&a));
        }
    }
}
