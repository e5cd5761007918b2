//! FLOW records into ClickHouse 18.16: CAPTURE → BASE → FLOW → IP2STR on a
//! capture file the test writes, branching to JSON and to CLICKHOUSE into
//! the shipped flows table (conf/sql/clickhouse-flows.sql with the FLOW
//! columns its header documents), which rulogd makes itself
//! (`create="flow"`) on the empty server. Every row equals a JSON record of the
//! same run, and no record is missing or doubled; in particular
//! `flow.end_reason`, whose name has an underscore, reaches the column
//! `flow_end_reason` (a column takes a key with `_` where its reading has
//! `.`).
//!
//! Run: `cargo build -p rulogd && cargo test -p rulogd-tests --test
//! clickhouse_flow` (root; clickhouse-server installed).

use rulogd_tests::clickhouse::{self, ClickHouse, PASS, USER};

use rulogd_tests::{self as lab, Netns, TempDir};

const CONF: &str = concat!(
    lab::conf_global!(
        "cap1:CAPTURE,base1:BASE,flow1:FLOW,ip2str1:IP2STR,json1:JSON",
        "cap1:CAPTURE,base1:BASE,flow1:FLOW,ip2str1:IP2STR,ch1:CLICKHOUSE"
    ),
    "\n",
    lab::conf_mixed_flows!(),
    "\n",
    lab::conf_clickhouse!("flows"),
    "\
create=\"flow\"
batch_age=200
spool_dir=\"{SPOOL}\"
"
);

/// The JSON key compared and the query expression that gives it as JSON
/// shows it (`\\N` where a record lacks the key).
const FIELDS: &[(&str, &str)] = &[
    ("flow.id", "flow_id"),
    ("flow.seq", "flow_seq"),
    ("flow.type", "flow_type"),
    ("flow.end_reason", "flow_end_reason"),
    ("flow.guessed", "flow_guessed"),
    ("flow.direction", "flow_direction"),
    ("ct.event", "ct_event"),
    ("flow.start.sec", "toUInt32(flow_start_sec)"),
    ("flow.start.usec", "flow_start_usec"),
    ("flow.end.sec", "toUInt32(flow_end_sec)"),
    ("flow.end.usec", "flow_end_usec"),
    ("oob.family", "oob_family"),
    ("oob.vlan", "oob_vlan"),
    ("orig.ip.protocol", "orig_ip_protocol"),
    (
        "src_ip",
        "replaceOne(IPv6NumToString(orig_ip_saddr), '::ffff:', '')",
    ),
    (
        "dest_ip",
        "replaceOne(IPv6NumToString(orig_ip_daddr), '::ffff:', '')",
    ),
    (
        "reply.ip.saddr.str",
        "replaceOne(IPv6NumToString(reply_ip_saddr), '::ffff:', '')",
    ),
    ("orig.l4.sport", "orig_l4_sport"),
    ("orig.l4.dport", "orig_l4_dport"),
    ("reply.l4.sport", "reply_l4_sport"),
    ("orig.raw.pktcount", "orig_raw_pktcount"),
    ("orig.raw.pktlen", "orig_raw_pktlen"),
    ("reply.raw.pktcount", "reply_raw_pktcount"),
    ("reply.raw.pktlen", "reply_raw_pktlen"),
    ("orig.tcp.flags", "orig_tcp_flags"),
    ("reply.tcp.flags", "reply_tcp_flags"),
    ("icmp.type", "icmp_type"),
    ("icmpv6.type", "icmpv6_type"),
];

#[test]
fn every_flow_row_equals_its_json_record_end_reason_included() {
    if !clickhouse::debian_ready() {
        return;
    }
    let tag = "chflow";
    let ns = Netns::new(tag).unwrap();
    let ch = ClickHouse::start(tag, ns.name());
    let dir = TempDir::new(tag);
    let d = dir.path();
    let pcap = d.join("flows.pcap");
    rulogd_tests::pcapgen::mixed_flows(&pcap);
    let vars = [
        ("URL", ch.url()),
        ("USER", USER.to_string()),
        ("PASS", PASS.to_string()),
        ("SPOOL", lab::path_str(&d.join("spool"))),
    ];
    // In the namespace, where the server listens; CAPTURE's end of file
    // ends the run, and the output hands its last batch over first.
    let f = rulogd_tests::daemon::run_capture(Some(&ns), d, "rulogd", CONF, &pcap, &vars);
    let log_text = f.log;
    assert_eq!(f.code, Some(0), "{log_text}");
    let recs = f.records;
    let want = clickhouse::json_rows(&recs, FIELDS);
    let col = |k: &str| FIELDS.iter().position(|f| f.0 == k).unwrap();
    for (k, v) in [
        ("flow.type", "start"),
        ("flow.type", "update"),
        ("flow.type", "end"),
        ("flow.end_reason", "fin"),
        ("flow.end_reason", "forced"),
        ("flow.direction", "inbound"),
        ("flow.direction", "outbound"),
        ("flow.direction", "internal"),
        ("oob.vlan", "7"),
        ("oob.family", "10"),
    ] {
        assert!(
            want.iter().any(|r| r.split('\t').nth(col(k)) == Some(v)),
            "no JSON record with {k} = {v}: {want:#?}"
        );
    }
    let got = clickhouse::table_rows(&ch, "flows", FIELDS);
    assert_eq!(got.len(), want.len(), "rows vs JSON records\n{log_text}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "ClickHouse row vs JSON record (fields {FIELDS:?})");
    }
}
