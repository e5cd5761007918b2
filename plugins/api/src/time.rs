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
