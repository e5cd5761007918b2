//! Formatting shared by the text outputs (LOGEMU, SYSLOG, OPRINT, GPRINT,
//! XML): local time as libc prints it, addresses as glibc's `inet_ntop`
//! writes them, and C-string cuts. Nothing here allocates.

use rulogd_delivery::{
    prepare_reopen, Delivery, DeliveryConfig, FileTransport, Producer, WhenFull,
};
use rulogd_plugin::addr_text::{ipv4_text, ipv6_text, LEN};
use rulogd_plugin::{BuildCtx, BuildError, KeyType, Slot, UpstreamKey, Value};
use std::sync::Once;

// The libc crate does not bind tzset on every target; it is POSIX.
extern "C" {
    fn tzset();
}

/// The producer of a file output with ulogd's `file` and `sync` options:
/// the file is opened now (so a bad path fails the build, as in ulogd's
/// start), appended to by a writer thread shared by the instance id, and
/// reopened by SIGHUP; a full queue blocks, as a file would.
pub(crate) fn file_producer(ctx: &BuildCtx, plugin: &str) -> Result<Producer, BuildError> {
    let path = ctx.options.str("file");
    let cfg = DeliveryConfig::new(ctx.instance, plugin, WhenFull::Block);
    let delivery = Delivery::shared(ctx, plugin, &cfg, || {
        let t = FileTransport::opened(path)
            .map_err(|e| BuildError::io(format!("{plugin}: can't open {path}"), e))?;
        prepare_reopen(ctx, plugin, std::path::Path::new(path));
        Ok(Box::new(t))
    })?;
    Ok(delivery.producer(ctx.options.int("sync") != 0))
}

/// One key of a wildcard output (OPRINT, GPRINT), resolved at bind time.
pub(crate) struct Field {
    /// The key name.
    pub(crate) name: Box<[u8]>,
    /// The slot of its nearest producer.
    pub(crate) slot: Slot,
    /// The type that producer declares, which decides how ulogd prints it.
    pub(crate) ty: KeyType,
}

/// Every upstream key in stack order, duplicates included, as ulogd's
/// wildcard input list has them; each copy reads the nearest producer's
/// value and type.
pub(crate) fn wildcard_fields(upstream: &[UpstreamKey]) -> Vec<Field> {
    upstream
        .iter()
        .map(|k| {
            let nearest = upstream
                .iter()
                .rev()
                .find(|n| n.def.name == k.def.name)
                .unwrap_or(k);
            Field {
                name: k.def.name.as_bytes().into(),
                slot: k.slot,
                ty: nearest.def.ty,
            }
        })
        .collect()
}

/// Seconds and microseconds since the epoch, now.
pub(crate) use rulogd_plugin::now_timeval as now;

/// Reads the time zone once, as the first `localtime` would.
pub(crate) fn tz_init() {
    static TZ: Once = Once::new();
    // SAFETY: tzset only reinitialises libc's zone state.
    TZ.call_once(|| unsafe { tzset() });
}

/// Local broken-down time of `secs`, as `localtime_r` gives it.
pub(crate) fn local_tm(secs: i64) -> libc::tm {
    // localtime_r need not read TZ itself.
    tz_init();
    // SAFETY: an all-zero tm is valid; localtime_r fills it or leaves it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t = secs as libc::time_t;
    // SAFETY: valid pointers for the duration of the call.
    unsafe { libc::localtime_r(&t, &mut tm) };
    tm
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `Mmm dd hh:mm:ss` (day padded with a space): `ctime()` from offset 4 cut
/// at 15 characters, and syslog's `%h %e %T`, in the C locale.
pub(crate) fn syslog_time(tm: &libc::tm) -> [u8; 15] {
    let mut b = *b"Jan  1 00:00:00";
    b[..3].copy_from_slice(MONTHS[tm.tm_mon.clamp(0, 11) as usize]);
    let two = |v: i32| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8];
    let d = two(tm.tm_mday);
    b[4] = if tm.tm_mday >= 10 { d[0] } else { b' ' };
    b[5] = d[1];
    b[7..9].copy_from_slice(&two(tm.tm_hour));
    b[10..12].copy_from_slice(&two(tm.tm_min));
    b[13..15].copy_from_slice(&two(tm.tm_sec));
    b
}

/// The `Mmm dd hh:mm:ss` form of the last second asked for, so a burst of
/// records with the same second costs one `localtime_r`.
#[derive(Default)]
pub(crate) struct SyslogClock {
    last: Option<(i64, [u8; 15])>,
}

impl SyslogClock {
    /// The text for `secs`.
    pub(crate) fn get(&mut self, secs: i64) -> [u8; 15] {
        match self.last {
            Some((s, b)) if s == secs => b,
            _ => {
                let b = syslog_time(&local_tm(secs));
                self.last = Some((secs, b));
                b
            }
        }
    }
}

/// The bytes before the first NUL: what `%s` prints of a C string.
pub(crate) fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

/// Appends a decimal unsigned number.
#[inline]
pub(crate) fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends a decimal signed number.
#[inline]
pub(crate) fn push_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends an integer or boolean value as printf's `%d`/`%u`/`%llu` would;
/// false if `v` is not a number.
pub(crate) fn push_number(out: &mut Vec<u8>, v: &Value) -> bool {
    match *v {
        Value::I8(n) => push_i64(out, n.into()),
        Value::I16(n) => push_i64(out, n.into()),
        Value::I32(n) => push_i64(out, n.into()),
        Value::I64(n) => push_i64(out, n),
        _ => match v.as_u64() {
            Some(n) => push_u64(out, n),
            None => return false,
        },
    }
    true
}

/// Appends an IPv4 or IPv6 address value as glibc's `inet_ntop` writes it;
/// false if `v` is not an address.
pub(crate) fn push_addr(out: &mut Vec<u8>, v: &Value) -> bool {
    match v {
        Value::Ipv4(a) => out.extend_from_slice(ipv4_text(a.octets(), &mut [0; LEN])),
        Value::Ipv6(a) => out.extend_from_slice(ipv6_text(a.octets(), &mut [0; LEN])),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ours(v: Value) -> String {
        let mut out = Vec::new();
        assert!(push_addr(&mut out, &v));
        String::from_utf8(out).unwrap()
    }

    /// The text is rulogd_plugin::addr_text's (tested there against glibc).
    #[test]
    fn addresses_as_inet_ntop_writes_them() {
        for s in ["::1.2.3.4", "::ffff:1.2.3.4", "1:0:0:2::3", "2001:db8::1"] {
            let a: Ipv6Addr = s.parse().unwrap();
            assert_eq!(ours(Value::Ipv6(a)), s);
        }
        assert_eq!(ours(Value::Ipv4(Ipv4Addr::new(192, 0, 2, 1))), "192.0.2.1");
        assert!(!push_addr(&mut Vec::new(), &Value::U8(1)));
    }

    #[test]
    fn syslog_time_is_ctime_from_offset_4() {
        for secs in [0i64, 1_700_000_000, 1_795_444_849, 951_782_400] {
            let tm = local_tm(secs);
            let mut buf = [0 as libc::c_char; 32];
            let t = secs as libc::time_t;
            // SAFETY: ctime_r needs 26 bytes; the buffer has 32.
            let p = unsafe { libc::ctime_r(&t, buf.as_mut_ptr()) };
            assert!(!p.is_null());
            // SAFETY: ctime_r wrote a NUL-terminated string.
            let c = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_bytes();
            assert_eq!(&syslog_time(&tm)[..], &c[4..19], "{secs}");
        }
        let mut clock = SyslogClock::default();
        assert_eq!(clock.get(5), clock.get(5));
    }

    #[test]
    fn numbers_and_c_strings() {
        let mut out = Vec::new();
        assert!(push_number(&mut out, &Value::I8(-3)));
        out.push(b' ');
        assert!(push_number(&mut out, &Value::U64(u64::MAX)));
        out.push(b' ');
        assert!(push_number(&mut out, &Value::Bool(true)));
        assert!(!push_number(&mut out, &Value::None));
        assert_eq!(out, b"-3 18446744073709551615 1");
        assert_eq!(cstr(b"ab\0cd"), b"ab");
        assert_eq!(cstr(b"abc"), b"abc");
    }
}
