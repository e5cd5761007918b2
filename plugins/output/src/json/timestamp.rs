//! The `timestamp` field: ulogd's local-time form (quirks included), RFC 3339
//! in UTC, or epoch seconds.

use rulogd_plugin::now_timeval as now;

/// Which form the timestamp takes (`timestamp_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsFormat {
    /// `2026-11-23T15:40:49.959561+0100`, local time, as ulogd 2.0.8 writes it.
    Ulogd,
    /// `2026-11-23T14:40:49.959561Z`.
    Rfc3339,
    /// `1795444849.959561`, a JSON number.
    Epoch,
}

impl TsFormat {
    /// Parses `ulogd`, `rfc3339` or `epoch` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        [
            ("ulogd", TsFormat::Ulogd),
            ("rfc3339", TsFormat::Rfc3339),
            ("epoch", TsFormat::Epoch),
        ]
        .into_iter()
        .find(|(n, _)| s.eq_ignore_ascii_case(n))
        .map(|(_, f)| f)
    }

    /// Whether the value is a JSON string (quoted) rather than a number.
    pub fn quoted(self) -> bool {
        self != TsFormat::Epoch
    }
}

/// Broken-down time, the fields ulogd prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tm {
    /// Full year.
    pub year: i64,
    /// 1–12.
    pub mon: u32,
    /// 1–31.
    pub day: u32,
    /// 0–23.
    pub hour: u32,
    /// 0–59.
    pub min: u32,
    /// 0–60.
    pub sec: u32,
}

/// A small fixed buffer the timestamp is formatted into, so nothing allocates.
#[derive(Clone, Copy)]
pub struct TsBuf {
    len: usize,
    buf: [u8; 64],
}

impl TsBuf {
    const fn new() -> Self {
        TsBuf {
            len: 0,
            buf: [0; 64],
        }
    }

    /// The formatted bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, s: &[u8]) {
        // Every form is far below 64 bytes; clip rather than panic.
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    /// Appends `v` as printf's `%0<width>d` would (sign counts in the width).
    fn push_padded(&mut self, v: i64, width: usize) {
        let mut it = itoa::Buffer::new();
        let digits = it.format(v.unsigned_abs());
        let sign = usize::from(v < 0);
        if v < 0 {
            self.push(b"-");
        }
        for _ in digits.len() + sign..width {
            self.push(b"0");
        }
        self.push(digits.as_bytes());
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// Formats `YYYY-MM-DDTHH:MM:SS`.
pub fn push_datetime(out: &mut TsBuf, t: &Tm) {
    out.push_padded(t.year, 4);
    out.push(b"-");
    out.push_padded(t.mon.into(), 2);
    out.push(b"-");
    out.push_padded(t.day.into(), 2);
    out.push(b"T");
    out.push_padded(t.hour.into(), 2);
    out.push(b":");
    out.push_padded(t.min.into(), 2);
    out.push(b":");
    out.push_padded(t.sec.into(), 2);
}

/// ulogd's zone suffix for a UTC offset in seconds: `+HHMM` (`%+03d%02d` of
/// the truncated hours and the absolute minutes), and, because of the
/// assignment-for-comparison bug in 2.0.8/2.0.9, empty when the offset is 0.
/// Offsets between -1 h and 0 lose their sign (`-0030` prints as `+0030`), as
/// ulogd's arithmetic does.
pub fn push_ulogd_zone(out: &mut TsBuf, gmtoff: i64) {
    if gmtoff == 0 {
        return;
    }
    let off = gmtoff % 86400;
    let hours = off / 3600;
    let minutes = off.abs() / 60 % 60;
    out.push(if hours < 0 { b"-" } else { b"+" });
    out.push_padded(hours.abs(), 2);
    out.push_padded(minutes, 2);
}

/// Local time through `localtime_r` (honours `TZ`), with the UTC offset.
pub fn localtime(t: i64) -> Option<(Tm, i64)> {
    let tt = libc::time_t::try_from(t).ok()?;
    // SAFETY: a zeroed tm is a valid out-parameter; localtime_r only writes it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    let r = unsafe { libc::localtime_r(&tt, &mut tm) };
    if r.is_null() {
        return None;
    }
    Some((
        Tm {
            year: i64::from(tm.tm_year) + 1900,
            mon: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            min: tm.tm_min as u32,
            sec: tm.tm_sec as u32,
        },
        tm.tm_gmtoff,
    ))
}

/// UTC broken-down time, computed without libc (days-to-civil).
pub fn utc(t: i64) -> Tm {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let mon = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(mon <= 2);
    Tm {
        year,
        mon,
        day,
        hour: (secs / 3600) as u32,
        min: (secs / 60 % 60) as u32,
        sec: (secs % 60) as u32,
    }
}

/// Formats timestamps, caching the per-second part so `localtime_r` runs once
/// per second rather than once per record.
pub struct Timestamper {
    format: TsFormat,
    cached_sec: Option<i64>,
    /// Date and time (and for ulogd the zone suffix, kept apart).
    cached_dt: TsBuf,
    cached_zone: TsBuf,
    cached_ok: bool,
    out: TsBuf,
}

impl Timestamper {
    /// A formatter for `format`.
    pub fn new(format: TsFormat) -> Self {
        Timestamper {
            format,
            cached_sec: None,
            cached_dt: TsBuf::new(),
            cached_zone: TsBuf::new(),
            cached_ok: false,
            out: TsBuf::new(),
        }
    }

    /// The form.
    pub fn format(&self) -> TsFormat {
        self.format
    }

    /// Formats the record time: `sec`/`usec` are the valid `oob.time.*` values.
    /// Returns `None` if the time cannot be represented (the field is omitted).
    pub fn render(&mut self, sec: Option<u64>, usec: Option<u64>) -> Option<&[u8]> {
        self.out.clear();
        match self.format {
            TsFormat::Ulogd => {
                // ulogd reads the seconds as time_t and prints `%06u` of the
                // 32-bit usec whenever that key is valid, even when the
                // seconds fall back to the current time.
                let t = match sec {
                    Some(s) => s as i64,
                    None => now().0,
                };
                self.cache_local(t);
                if !self.cached_ok {
                    return None;
                }
                self.out.push(self.cached_dt.as_bytes());
                if let Some(u) = usec {
                    self.out.push(b".");
                    self.out.push_padded(i64::from(u as u32), 6);
                }
                self.out.push(self.cached_zone.as_bytes());
            }
            TsFormat::Rfc3339 | TsFormat::Epoch => {
                let (t, frac) = match sec {
                    Some(s) => {
                        let s = s as i64;
                        match usec {
                            Some(u) => (
                                s.saturating_add((u / 1_000_000) as i64),
                                Some((u % 1_000_000) as u32),
                            ),
                            None => (s, None),
                        }
                    }
                    None => {
                        let (s, u) = now();
                        (s, Some(u))
                    }
                };
                if self.format == TsFormat::Rfc3339 {
                    if self.cached_sec != Some(t) {
                        self.cached_dt.clear();
                        push_datetime(&mut self.cached_dt, &utc(t));
                        self.cached_sec = Some(t);
                    }
                    self.out.push(self.cached_dt.as_bytes());
                } else {
                    self.out.push_padded(t, 1);
                }
                if let Some(u) = frac {
                    self.out.push(b".");
                    self.out.push_padded(u.into(), 6);
                }
                if self.format == TsFormat::Rfc3339 {
                    self.out.push(b"Z");
                }
            }
        }
        Some(self.out.as_bytes())
    }

    fn cache_local(&mut self, t: i64) {
        if self.cached_sec == Some(t) {
            return;
        }
        self.cached_sec = Some(t);
        self.cached_dt.clear();
        self.cached_zone.clear();
        self.cached_ok = match localtime(t) {
            Some((tm, off)) => {
                push_datetime(&mut self.cached_dt, &tm);
                push_ulogd_zone(&mut self.cached_zone, off);
                true
            }
            None => false,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(off: i64) -> String {
        let mut b = TsBuf::new();
        push_ulogd_zone(&mut b, off);
        String::from_utf8_lossy(b.as_bytes()).into_owned()
    }

    #[test]
    fn ulogd_zone_suffix_matches_its_printf() {
        assert_eq!(zone(3600), "+0100");
        assert_eq!(zone(7200), "+0200");
        assert_eq!(zone(-12600), "-0330");
        assert_eq!(zone(19800), "+0530");
        assert_eq!(zone(-36000), "-1000");
        // The quirks: no suffix at all for UTC, and a lost sign below one hour.
        assert_eq!(zone(0), "");
        assert_eq!(zone(-1800), "+0030");
    }

    #[test]
    fn datetime_is_zero_padded() {
        let mut b = TsBuf::new();
        push_datetime(
            &mut b,
            &Tm {
                year: 987,
                mon: 1,
                day: 2,
                hour: 3,
                min: 4,
                sec: 5,
            },
        );
        assert_eq!(b.as_bytes(), b"0987-01-02T03:04:05");
    }

    #[test]
    fn utc_civil_dates() {
        let t = utc(1_795_444_849);
        assert_eq!(
            (t.year, t.mon, t.day, t.hour, t.min, t.sec),
            (2026, 11, 23, 14, 40, 49)
        );
        let t = utc(0);
        assert_eq!((t.year, t.mon, t.day), (1970, 1, 1));
        let t = utc(-1);
        assert_eq!((t.year, t.mon, t.day, t.hour), (1969, 12, 31, 23));
        let t = utc(951_782_400); // 2000-02-29
        assert_eq!((t.year, t.mon, t.day), (2000, 2, 29));
    }

    #[test]
    fn rfc3339_and_epoch_forms() {
        let mut r = Timestamper::new(TsFormat::Rfc3339);
        assert_eq!(
            r.render(Some(1_795_444_849), Some(959_561)),
            Some(&b"2026-11-23T14:40:49.959561Z"[..])
        );
        assert_eq!(
            r.render(Some(1_795_444_849), None),
            Some(&b"2026-11-23T14:40:49Z"[..])
        );
        let mut e = Timestamper::new(TsFormat::Epoch);
        assert_eq!(
            e.render(Some(1_795_444_849), Some(959_561)),
            Some(&b"1795444849.959561"[..])
        );
        assert_eq!(e.render(Some(5), Some(42)), Some(&b"5.000042"[..]));
        assert_eq!(e.render(Some(5), None), Some(&b"5"[..]));
        // Without a packet time the current time has microseconds.
        let now = e.render(None, None).map(|b| b.to_vec()).unwrap_or_default();
        assert_eq!(now.iter().filter(|&&c| c == b'.').count(), 1);
    }

    #[test]
    fn formats_parse_case_insensitively() {
        assert_eq!(TsFormat::parse("RFC3339"), Some(TsFormat::Rfc3339));
        assert_eq!(TsFormat::parse("Epoch"), Some(TsFormat::Epoch));
        assert_eq!(TsFormat::parse("ulogd"), Some(TsFormat::Ulogd));
        assert_eq!(TsFormat::parse("iso"), None);
    }
}
