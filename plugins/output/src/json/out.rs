//! The render hot path's appender: a `Vec<u8>` written through fixed-size
//! copies instead of many small `extend_from_slice` calls (each of which is a
//! call into libc's memmove for a handful of bytes).
//!
//! The only `unsafe` of the JSON renderer lives here. Every method reserves
//! the room it writes into first, so no caller has an invariant to keep.

use std::mem::MaybeUninit;

/// Two decimal digits for every value 0..100.
static DIGITS2: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Bytes a JSON string may hold as they are: printable ASCII except `"` and
/// `\`. Control characters (NUL included) need escaping or cutting, bytes
/// from 0x80 need UTF-8 validation; both go to the slow path. DEL (0x7f) is
/// written as is by jansson.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0x20;
    while c < 0x80 {
        t[c] = c != b'"' as usize && c != b'\\' as usize;
        c += 1;
    }
    t
};

/// Whether `s` is a JSON string as it is (see [`PLAIN`]): nothing to escape,
/// cut or validate.
#[inline]
pub(crate) fn is_plain(s: &[u8]) -> bool {
    s.iter().all(|&c| PLAIN[c as usize])
}

/// Longest decimal form of an `i64` (`-9223372036854775808`).
const INT_MAX_LEN: usize = 20;

/// Appends to a byte vector; see the module comment.
pub(crate) struct Out<'a> {
    v: &'a mut Vec<u8>,
}

impl<'a> Out<'a> {
    /// An appender at the end of `v`.
    #[inline]
    pub(crate) fn new(v: &'a mut Vec<u8>) -> Self {
        Out { v }
    }

    /// The underlying vector, for the slow paths.
    #[inline]
    pub(crate) fn vec(&mut self) -> &mut Vec<u8> {
        self.v
    }

    /// Bytes in the vector.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.v.len()
    }

    /// Drops what was appended after `len`.
    #[inline]
    pub(crate) fn truncate(&mut self, len: usize) {
        self.v.truncate(len);
    }

    /// Appends one byte.
    #[inline]
    pub(crate) fn byte(&mut self, b: u8) {
        self.v.push(b);
    }

    /// Appends a slice of any length. Up to 32 bytes (the device name, the
    /// timestamp) this is two fixed-size copies that may overlap, inline,
    /// instead of a call into memcpy.
    #[inline]
    pub(crate) fn bytes(&mut self, s: &[u8]) {
        let n = s.len();
        if !(4..=32).contains(&n) {
            self.v.extend_from_slice(s);
            return;
        }
        self.v.reserve(n);
        let at = self.v.len();
        // SAFETY: `reserve(n)` left `n` writable bytes at `at`. Each pair of
        // copies reads `s[0..k]` and `s[n - k..n]` with `k <= n` (in bounds
        // of `s`) and writes the same offsets past `at` (inside the `n`
        // reserved bytes); together they cover `0..n` because `2k >= n`.
        // `s` cannot overlap the spare capacity (shared vs unique borrow).
        // Then all `n` bytes are initialised, as `set_len` claims.
        unsafe {
            let (src, dst) = (s.as_ptr(), self.v.as_mut_ptr().add(at));
            let k = if n >= 16 {
                16
            } else if n >= 8 {
                8
            } else {
                4
            };
            match k {
                16 => {
                    std::ptr::copy_nonoverlapping(src, dst, 16);
                    std::ptr::copy_nonoverlapping(src.add(n - 16), dst.add(n - 16), 16);
                }
                8 => {
                    std::ptr::copy_nonoverlapping(src, dst, 8);
                    std::ptr::copy_nonoverlapping(src.add(n - 8), dst.add(n - 8), 8);
                }
                _ => {
                    std::ptr::copy_nonoverlapping(src, dst, 4);
                    std::ptr::copy_nonoverlapping(src.add(n - 4), dst.add(n - 4), 4);
                }
            }
            self.v.set_len(at + n);
        }
    }

    /// Appends `src[..len]` by copying all `N` bytes of `src` (a fixed-size
    /// copy the compiler turns into a few vector moves) and then counting
    /// only `len` of them. The bytes past `len` land in spare capacity and
    /// are overwritten by the next append.
    #[inline]
    pub(crate) fn padded<const N: usize>(&mut self, src: &[u8; N], len: usize) {
        assert!(len <= N);
        self.v.reserve(N);
        let at = self.v.len();
        // SAFETY: `reserve(N)` guarantees `capacity - at >= N`, so the `N`
        // bytes written from `ptr + at` stay inside the allocation, and `src`
        // is `N` readable bytes that cannot overlap the vector's spare
        // capacity (it is borrowed shared while `self.v` is borrowed
        // mutably). After the copy the first `len <= N` bytes past `at` are
        // initialised, which is what `set_len(at + len)` claims.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.v.as_mut_ptr().add(at), N);
            self.v.set_len(at + len);
        }
    }

    /// Appends `v` in decimal, as printf's `%lld`.
    #[inline]
    pub(crate) fn int(&mut self, v: i64) {
        self.v.reserve(INT_MAX_LEN);
        let at = self.v.len();
        // SAFETY: `reserve` left at least INT_MAX_LEN bytes of spare capacity
        // at `at`; `write_int` writes exactly the `n <= INT_MAX_LEN` bytes it
        // returns, all inside that room, which `set_len` then claims.
        unsafe {
            let n = write_int(self.v.as_mut_ptr().add(at), v);
            self.v.set_len(at + n);
        }
    }

    /// Appends `s` as a quoted JSON string if it needs no escaping and no
    /// UTF-8 validation (printable ASCII only, see [`PLAIN`]), and returns
    /// true. Otherwise appends nothing and returns false.
    #[inline]
    pub(crate) fn plain_string(&mut self, s: &[u8]) -> bool {
        let n = s.len();
        self.v.reserve(n + 2);
        let at = self.v.len();
        let spare = &mut self.v.spare_capacity_mut()[..n + 2];
        spare[0] = MaybeUninit::new(b'"');
        for (d, &c) in spare[1..=n].iter_mut().zip(s) {
            if !PLAIN[c as usize] {
                return false;
            }
            *d = MaybeUninit::new(c);
        }
        spare[n + 1] = MaybeUninit::new(b'"');
        // SAFETY: the quote, the `n` bytes of `s` and the closing quote, so
        // `n + 2` bytes past `at`, were written just above.
        unsafe { self.v.set_len(at + n + 2) };
        true
    }
}

/// Writes `v` in decimal at `p`; returns the length (at most INT_MAX_LEN).
///
/// # Safety
/// `p` must be valid for writes of INT_MAX_LEN bytes.
#[inline]
unsafe fn write_int(p: *mut u8, v: i64) -> usize {
    let neg = v < 0;
    let u = v.unsigned_abs();
    // SAFETY (for every write below): the sign and the digits take
    // `neg + digits(u) <= INT_MAX_LEN` bytes from `p`, which the caller
    // guarantees writable; each write lands at an offset below that length.
    unsafe {
        if neg {
            *p = b'-';
        }
        let p = p.add(neg as usize);
        let n = if let Ok(x) = u32::try_from(u) {
            // Nearly every value: 32-bit arithmetic is cheaper.
            let n = digits_u32(x);
            write_digits_u32(p, n, x);
            n
        } else {
            let n = u.ilog10() as usize + 1;
            // The low 8 digits first, then what is left fits in 32 bits
            // (u64::MAX / 10^8 < 2^38 does not, so twice).
            let mut hi = u;
            let mut end = n;
            while hi > u32::MAX as u64 {
                let lo = (hi % 100_000_000) as u32;
                hi /= 100_000_000;
                end -= 8;
                write_digits_u32(p.add(end), 8, lo);
            }
            write_digits_u32(p, end, hi as u32);
            n
        };
        neg as usize + n
    }
}

/// `DIGIT_COUNT[log2(x)]`: added to `x`, the high 32 bits are the number of
/// decimal digits of `x` (Lemire's branch-free digit count). For the `x`
/// with `floor(log2(x)) = i`, `d` = digits of `2^i`, the count is `d` below
/// `10^d` and `d + 1` from it, which `(d + 1) * 2^32 - 10^d` encodes.
static DIGIT_COUNT: [u64; 32] = {
    let mut t = [0u64; 32];
    let mut i = 0;
    while i < 32 {
        let lo = 1u64 << i;
        let (mut d, mut p) = (1u64, 10u64);
        while p <= lo {
            d += 1;
            p *= 10;
        }
        // `p` = 10^d, the first power of ten above 2^i.
        t[i] = if p < (1u64 << 32) {
            ((d + 1) << 32) - p
        } else {
            d << 32
        };
        i += 1;
    }
    t
};

/// Number of decimal digits of `x` (1 for 0).
#[inline(always)]
fn digits_u32(x: u32) -> usize {
    let log2 = 31 - (x | 1).leading_zeros();
    ((x as u64 + DIGIT_COUNT[log2 as usize]) >> 32) as usize
}

/// Writes the low `n` decimal digits of `x` at `p..p + n`, zero-padded.
///
/// # Safety
/// `p` must be valid for writes of `n` bytes.
#[inline(always)]
unsafe fn write_digits_u32(p: *mut u8, n: usize, mut x: u32) {
    let mut i = n;
    // SAFETY: every write is at an index below `n` (`i` only decreases and
    // each step checks there is room for what it writes).
    unsafe {
        while i >= 2 {
            let r = (x % 100) as usize * 2;
            x /= 100;
            i -= 2;
            std::ptr::copy_nonoverlapping(DIGITS2.as_ptr().add(r), p.add(i), 2);
        }
        if i == 1 {
            *p = b'0' + (x % 10) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_copies_only_len_and_keeps_earlier_bytes() {
        let src: [u8; 8] = *b"abcdefgh";
        for cap in [0, 1, 7, 8, 9, 64] {
            for len in 0..=8 {
                let mut v = Vec::with_capacity(cap);
                v.extend_from_slice(b"xy");
                let mut o = Out::new(&mut v);
                o.padded(&src, len);
                o.padded(&src, 8);
                let mut want = b"xy".to_vec();
                want.extend_from_slice(&src[..len]);
                want.extend_from_slice(&src);
                assert_eq!(v, want, "cap {cap} len {len}");
            }
        }
    }

    #[test]
    #[should_panic]
    fn padded_rejects_len_beyond_the_source() {
        let mut v = Vec::new();
        Out::new(&mut v).padded(b"ab", 3);
    }

    #[test]
    fn padded_at_the_exact_end_of_capacity() {
        // The fixed-size copy must never write past the allocation: fill a
        // vector so that exactly N bytes are spare, then append.
        let src = [7u8; 32];
        let mut v: Vec<u8> = Vec::with_capacity(40);
        let spare = v.capacity() - 32;
        v.resize(v.capacity() - 32, 1);
        assert_eq!(v.capacity() - v.len(), 32, "{spare}");
        Out::new(&mut v).padded(&src, 32);
        assert_eq!(v.len(), v.capacity());
        assert!(v[v.len() - 32..].iter().all(|&b| b == 7));
    }

    #[test]
    fn ints_match_std_formatting() {
        let mut vals = vec![
            0,
            1,
            -1,
            9,
            10,
            11,
            99,
            100,
            101,
            999,
            1000,
            65535,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
            u32::MAX as i64,
            -(u32::MAX as i64),
        ];
        let mut p = 1i64;
        for _ in 0..18 {
            vals.extend([p - 1, p, p + 1, -p + 1, -p, -p - 1]);
            p *= 10;
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            vals.push(x as i64);
            vals.push((x >> (x % 64)) as i64);
        }
        for v in vals {
            // Tight capacity, so the reserve path is exercised too.
            let mut out = Vec::new();
            Out::new(&mut out).int(v);
            assert_eq!(out, v.to_string().as_bytes(), "{v}");
        }
    }

    #[test]
    fn bytes_of_every_length_around_the_fast_path() {
        let src: Vec<u8> = (0..80u8).map(|i| b'A' + i % 26).collect();
        for len in 0..=40 {
            for cap in [0, len, len + 1, 64] {
                let mut v = Vec::with_capacity(cap);
                v.extend_from_slice(b"<");
                let mut o = Out::new(&mut v);
                o.bytes(&src[..len]);
                o.bytes(&src[3..3 + len]);
                let mut want = b"<".to_vec();
                want.extend_from_slice(&src[..len]);
                want.extend_from_slice(&src[3..3 + len]);
                assert_eq!(v, want, "len {len} cap {cap}");
            }
        }
    }

    #[test]
    fn digit_count_at_every_power_of_ten_and_two() {
        let mut xs = vec![0u32, 1, u32::MAX, u32::MAX - 1];
        for i in 0..32 {
            let p = 1u32 << i;
            xs.extend([p - 1, p, p.saturating_add(1)]);
        }
        let mut p = 1u32;
        for _ in 0..9 {
            p *= 10;
            xs.extend([p - 1, p, p + 1]);
        }
        for x in xs {
            assert_eq!(digits_u32(x), x.to_string().len(), "{x}");
        }
    }

    #[test]
    fn plain_strings_and_what_is_refused() {
        let mut v = b"[".to_vec();
        let mut o = Out::new(&mut v);
        assert!(o.plain_string(b"127.0.0.1"));
        assert!(o.plain_string(b""));
        assert!(o.plain_string(b" ~/\x7f"));
        let before = o.len();
        for bad in [
            &b"a\"b"[..],
            b"a\\b",
            b"\0",
            b"tab\t",
            b"\x1f",
            b"caf\xc3\xa9",
            b"\xff",
        ] {
            assert!(!o.plain_string(bad), "{bad:?}");
            assert_eq!(o.len(), before, "{bad:?} appended something");
        }
        assert_eq!(v, b"[\"127.0.0.1\"\"\"\" ~/\x7f\"");
    }

    #[test]
    fn plain_table_is_printable_ascii_without_quote_and_backslash() {
        for c in 0..=255u8 {
            let want = (0x20..0x80).contains(&c) && c != b'"' && c != b'\\';
            assert_eq!(PLAIN[c as usize], want, "{c:#x}");
        }
    }
}
