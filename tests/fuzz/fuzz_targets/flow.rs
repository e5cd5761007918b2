//! Fuzzes FLOW's packet path: the input is cut into packets, BASE decodes
//! each into its keys, and FLOW reads them into its table (fragment cache,
//! timeouts on the packets' clock, eviction in a 64-flow table). Any panic
//! is a bug; the table must never hold more than its bound and must be
//! empty after the forced end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rulogd_filter::flow::fuzz::{fuzz_packets, FUZZ_MAX_FLOWS};

fuzz_target!(|data: &[u8]| {
    let o = fuzz_packets(data);
    assert!(o.peak_flows <= FUZZ_MAX_FLOWS, "{o:?}");
    assert_eq!(o.left, 0, "{o:?}");
    assert!(o.records >= o.peak_flows, "{o:?}");
});
