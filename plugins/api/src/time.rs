//! Wall-clock time in the form the time keys carry.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds and microseconds since the epoch, as ulogd's `gettimeofday`
/// fallback gives them for `oob.time.*` and the flow times when the kernel
/// gave none.
pub fn now_sec_usec() -> (u32, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as u32, d.subsec_micros())
}

/// Seconds and microseconds since the epoch as `gettimeofday` gives them:
/// before 1970 the seconds are negative and the microseconds still count
/// up. For the outputs that print the time of day.
pub fn now_timeval() -> (i64, u32) {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
        Err(e) => {
            let d = e.duration();
            let mut s = -(d.as_secs() as i64);
            let mut u = d.subsec_micros();
            if u > 0 {
                s -= 1;
                u = 1_000_000 - u;
            }
            (s, u)
        }
    }
}
