//! Fuzzes BASE: byte 0 selects the family (2, 10, 7, 3), the rest is the
//! packet. Any panic is a bug: the decoder must cope with every byte string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rulogd_plugin::Value;

fuzz_target!(|data: &[u8]| {
    for (key, value) in rulogd_filter::base::fuzz_input(data) {
        // Header fields narrower than their type must stay in range.
        if let ("ip.ihl" | "tcp.offset" | "tcp.reserved" | "tcp.res1", Value::U8(v)) = (key, &value)
        {
            assert!(*v <= 15, "{key} = {v}");
        }
        if let ("ip6.flowlabel", Value::U32(v)) = (key, &value) {
            assert!(*v <= 0xf_ffff, "{key} = {v}");
        }
    }
});
