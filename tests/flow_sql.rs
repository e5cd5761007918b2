//! Flow records into SQL: CAPTURE → BASE → FLOW → IP2STR on a capture file
//! the test writes, branching to JSON, to SQLITE3 (one table a day, made
//! from conf/sql/sqlite3.sql's ulog_flow) and to PGSQL (conf/sql/pgsql.sql's
//! ulog_flow, in a throw-away PostgreSQL). Every row of both databases
//! equals a JSON record of the same run, column by column, and no record
//! is missing: start, update and end records, IPv4 and IPv6, TCP flags,
//! VLAN, direction.
//!
//! Run: `cargo build -p rulogd && cargo test -p rulogd-tests --test
//! flow_sql` (root needed for PostgreSQL).

use rulogd_tests::pg::{self, Pg};
use rulogd_tests::{self as lab, Record, TempDir};
use std::path::Path;
use std::process::Command;

const CONF: &str = concat!(
    lab::conf_global!(
        "cap1:CAPTURE,base1:BASE,flow1:FLOW,ip2str1:IP2STR,json1:JSON",
        "cap1:CAPTURE,base1:BASE,flow1:FLOW,ip2str1:IP2STR,sql1:SQLITE3",
        "cap1:CAPTURE,base1:BASE,flow1:FLOW,ip2str1:IP2STR,pg1:PGSQL"
    ),
    "\n",
    lab::conf_mixed_flows!(),
    "\n\
[sql1]
db=\"{DB}\"
table=\"ulog_flow_%Y_%m_%d\"
template=\"ulog_flow\"

[pg1]
db=\"rdb\"
host=\"{HOST}\"
port={PORT}
user=\"postgres\"
table=\"ulog_flow\"
procedure=\"INSERT\"
"
);

/// The columns compared, with the JSON key each one's value is under.
const COLUMNS: &[(&str, &str)] = &[
    ("flow_id", "flow.id"),
    ("flow_seq", "flow.seq"),
    ("flow_type", "flow.type"),
    ("flow_end_reason", "flow.end_reason"),
    ("flow_guessed", "flow.guessed"),
    ("flow_direction", "flow.direction"),
    ("flow_start_sec", "flow.start.sec"),
    ("flow_start_usec", "flow.start.usec"),
    ("flow_end_sec", "flow.end.sec"),
    ("flow_end_usec", "flow.end.usec"),
    ("oob_family", "oob.family"),
    ("oob_vlan", "oob.vlan"),
    ("orig_ip_protocol", "orig.ip.protocol"),
    ("orig_ip_saddr_str", "src_ip"),
    ("orig_ip_daddr_str", "dest_ip"),
    ("orig_l4_sport", "orig.l4.sport"),
    ("orig_l4_dport", "orig.l4.dport"),
    ("orig_raw_pktcount", "orig.raw.pktcount"),
    ("orig_raw_pktlen", "orig.raw.pktlen"),
    ("reply_raw_pktcount", "reply.raw.pktcount"),
    ("reply_raw_pktlen", "reply.raw.pktlen"),
    ("orig_tcp_flags", "orig.tcp.flags"),
    ("reply_tcp_flags", "reply.tcp.flags"),
    ("icmp_type", "icmp.type"),
    ("icmp_code", "icmp.code"),
    ("icmpv6_type", "icmpv6.type"),
    ("icmpv6_code", "icmpv6.code"),
];

fn json_text(r: &Record, key: &str) -> String {
    match r.get(key) {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Bool(b)) => (*b as u8).to_string(),
        Some(v) => v.to_string(),
    }
}

fn sqlite_rows(db: &Path) -> Vec<Vec<String>> {
    let q = |sql: &str| {
        let out = Command::new("sqlite3")
            .args(["-cmd", ".timeout 5000", "-separator", "\x1f"])
            .arg(db)
            .arg(sql)
            .output()
            .expect("sqlite3");
        assert!(out.status.success(), "{sql}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let tables = q("select name from sqlite_master where type = 'table' and name like 'ulog_flow_%' order by name");
    let tables: Vec<&str> = tables.lines().collect();
    assert!(!tables.is_empty(), "no dated table was made");
    // Dated by the flows' own times (2020-09-13 in any time zone give or
    // take a day), not by the clock of the run.
    for t in &tables {
        assert!(t.starts_with("ulog_flow_2020_09_1"), "{t}");
    }
    let cols: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    let mut rows = Vec::new();
    for t in tables {
        let text = q(&format!("select {} from \"{t}\"", cols.join(", ")));
        rows.extend(
            text.lines()
                .map(|l| l.split('\x1f').map(str::to_string).collect::<Vec<_>>()),
        );
    }
    assert_eq!(
        q("select count(*) from ulog_flow").trim(),
        "0",
        "the template stays empty"
    );
    rows
}

fn pg_rows(pg: &Pg) -> Vec<Vec<String>> {
    let cols: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    let mut rows = pg.rows("rdb", &format!("select {} from ulog_flow", cols.join(", ")));
    let g = COLUMNS.iter().position(|c| c.0 == "flow_guessed").unwrap();
    for r in &mut rows {
        r[g] = match r[g].as_str() {
            "t" => "1".into(),
            "f" => "0".into(),
            x => x.into(),
        };
    }
    rows
}

#[test]
fn every_flow_row_in_sqlite_and_postgresql_equals_its_json_record() {
    if !lab::require_root() || !pg::available() {
        return;
    }
    let dir = TempDir::new("flowsql");
    let d = dir.path();
    let pcap = d.join("flows.pcap");
    rulogd_tests::pcapgen::mixed_flows(&pcap);
    let db = d.join("flows.sqlite3");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let schema = std::fs::read_to_string(root.join("conf/sql/sqlite3.sql")).unwrap();
    // On stdin: the file starts with `--`, which the shell would take for
    // an option.
    let mut child = Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sqlite3");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), schema.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "sqlite3 < sqlite3.sql");
    let pg = Pg::start("flowsql");
    pg.createdb("rdb");
    pg.psql_script(
        "rdb",
        &std::fs::read_to_string(root.join("conf/sql/pgsql.sql")).unwrap(),
    );
    let vars = [
        ("DB", lab::path_str(&db)),
        ("HOST", pg.host()),
        ("PORT", pg.port().to_string()),
    ];
    let f = rulogd_tests::daemon::run_capture(None, d, "flowsql", CONF, &pcap, &vars);
    assert_eq!(f.code, Some(0), "{}", f.log);
    let mut want: Vec<Vec<String>> = f
        .records
        .iter()
        .map(|r| COLUMNS.iter().map(|(_, k)| json_text(r, k)).collect())
        .collect();
    want.sort();
    // The run made every kind of record the table has columns for.
    let col = |name: &str| COLUMNS.iter().position(|c| c.0 == name).unwrap();
    let has = |c: &str, v: &str| want.iter().any(|r| r[col(c)] == v);
    for (c, v) in [
        ("flow_type", "start"),
        ("flow_type", "update"),
        ("flow_type", "end"),
        ("flow_end_reason", "fin"),
        ("flow_end_reason", "forced"),
        ("flow_direction", "inbound"),
        ("flow_direction", "outbound"),
        ("flow_direction", "internal"),
        ("flow_direction", "external"),
        ("oob_vlan", "7"),
        ("oob_family", "10"),
        ("flow_guessed", "0"),
    ] {
        assert!(has(c, v), "no record with {c} = {v}: {want:#?}");
    }
    for (name, mut got) in [("SQLite", sqlite_rows(&db)), ("PostgreSQL", pg_rows(&pg))] {
        got.sort();
        assert_eq!(got.len(), want.len(), "{name}: rows vs JSON records");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{name} row vs JSON record (columns {COLUMNS:?})");
        }
    }
}
