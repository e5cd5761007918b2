//! Fuzzes FLOW's packet path: packets BASE decodes from the input go into
//! FLOW's record reading and flow table (with a small max_flows, emergency
//! mode, updates, start records, unidirectional halves, max life by the
//! options byte). Beyond "no panic", every packet FLOW takes must come out
//! in its records exactly once and the table never outgrows max_flows.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rulogd_filter::flow::fuzz::fuzz_input(data);
});
