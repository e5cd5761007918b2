//! PGSQL against ulogd2's PGSQL on the same packets, in a throw-away
//! PostgreSQL cluster: plain INSERT into a table, and ulogd2's own schema
//! (Debian's pgsql-ulogd2.sql) with its INSERT_PACKET_FULL procedure. Also
//! a prefix with quotes, backslashes and non-ASCII bytes, and time-partitioned
//! tables.
//!
//! Run: `cargo build --release -p rulogd && cargo test -p rulogd-tests --test sql_pgsql`
//! (root; PostgreSQL 15 server binaries and ulogd2-pgsql installed).

use rulogd_tests::pg::Pg;
use rulogd_tests::traffic::{udp_send, Mix};
use rulogd_tests::{self as lab, daemon, Daemon, Netns, TempDir};
use std::time::Duration;

/// A table with a serial id, many of BASE's keys, IP2STR's strings into
/// inet columns and the raw addresses as numbers.
const TABLE: &str = "\
CREATE TABLE pkt (
  _id bigserial PRIMARY KEY,
  oob_time_sec bigint, oob_time_usec bigint, oob_prefix text, oob_hook smallint,
  oob_mark bigint, oob_in text, oob_out text, oob_family smallint,
  oob_protocol integer, raw_pktlen bigint, raw_label smallint,
  ip_saddr bigint, ip_daddr bigint, ip_saddr_str inet, ip_daddr_str inet,
  ip_protocol smallint, ip_tos smallint, ip_ttl smallint, ip_totlen integer,
  ip_ihl smallint, ip_csum integer, ip_id integer, ip_fragoff integer,
  ip6_payloadlen integer, ip6_flowlabel bigint, ip6_hoplimit smallint,
  tcp_sport integer, tcp_dport integer, tcp_seq bigint, tcp_ackseq bigint,
  tcp_window integer, tcp_syn boolean, tcp_ack boolean, tcp_fin boolean,
  tcp_psh boolean, udp_sport integer, udp_dport integer, udp_len integer,
  icmp_type smallint, icmp_code smallint, icmp_echoid integer,
  icmp_echoseq integer, icmpv6_type smallint, icmpv6_code smallint
);";

const CONF: &str = concat!(
    lab::conf_global!("log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,{FILTERS}pg1:PGSQL"),
    "\n",
    lab::conf_nflog!(),
    "\n\
[pg1]
db=\"{DB}\"
host=\"{HOST}\"
port={PORT}
user=\"postgres\"
table=\"{TABLE}\"
procedure=\"{PROC}\"
"
);

fn conf(pg: &Pg, group: u16, db: &str, table: &str, proc_: &str, filters: &str) -> String {
    lab::fill(
        CONF,
        &[
            ("GROUP", group.to_string()),
            ("DB", db.to_string()),
            ("HOST", pg.host()),
            ("PORT", pg.port().to_string()),
            ("TABLE", table.to_string()),
            ("PROC", proc_.to_string()),
            ("FILTERS", filters.to_string()),
        ],
    )
}

fn log_twice(ns: &Netns, g1: u16, g2: u16) {
    ns.nft(&format!(
        "table inet t {{\n chain in {{\n  type filter hook input priority 0;\n\
         \x20 log prefix \"IN\" group {g1}\n  log prefix \"IN\" group {g2}\n\
         \x20 udp dport 9999 drop\n }}\n}}\n"
    ))
    .unwrap();
}

/// Runs ulogd2 (group `g1`, database `udb`) and rulogd (`g2`, `rdb`) with
/// the same config, sends the traffic, and returns both query results.
#[allow(clippy::too_many_arguments)]
fn differential(
    tag: &str,
    pg: &Pg,
    g1: u16,
    g2: u16,
    table: &str,
    proc_: &str,
    filters: &str,
    query: &str,
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let ns = Netns::new(tag).unwrap();
    log_twice(&ns, g1, g2);
    let dir = TempDir::new(tag);
    let u = Daemon::ulogd(
        &ns,
        dir.path(),
        &conf(pg, g1, "udb", table, proc_, filters),
        &[g1],
        &[],
    );
    let r = Daemon::rulogd(
        &ns,
        dir.path(),
        &conf(pg, g2, "rdb", table, proc_, filters),
        &[g2],
        &[],
    );
    ns.run_in_thread(|| Mix::SQL.send());
    for g in [g1, g2] {
        assert!(daemon::wait_drained(&ns, g, Duration::from_secs(5)));
    }
    let count = format!("select count(*) from ({query}) q");
    let done = lab::wait_until(Duration::from_secs(15), || {
        let n = pg.count("udb", &count);
        n > 0 && pg.count("rdb", &count) == n
    });
    u.stop();
    r.stop();
    let (a, b) = (pg.rows("udb", query), pg.rows("rdb", query));
    assert!(done, "ulogd2 wrote {} rows, rulogd {}", a.len(), b.len());
    assert!(a.len() > 30, "only {} rows", a.len());
    (a, b)
}

/// Columns whose values may differ: the packet times (two log rules, two
/// timestamps) and nothing else.
fn compare(cols: &[String], a: &[Vec<String>], b: &[Vec<String>]) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        for (c, name) in cols.iter().enumerate() {
            if name.starts_with("oob_time") {
                continue;
            }
            assert_eq!(
                x[c], y[c],
                "row {i} column {name}\nulogd2: {x:?}\nrulogd: {y:?}"
            );
        }
    }
}

fn columns(pg: &Pg, db: &str, rel: &str) -> Vec<String> {
    pg.psql(
        db,
        &format!(
            "select attname from pg_attribute where attrelid = '{rel}'::regclass \
             and attnum > 0 and not attisdropped order by attnum"
        ),
    )
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn insert_rows_equal_ulogd2_rows_for_the_same_packets() {
    lab::skip_unless_root!();
    let pg = Pg::start("pgins");
    for db in ["udb", "rdb"] {
        pg.createdb(db);
        pg.psql_script(db, TABLE);
    }
    let q = "select * from pkt order by _id";
    let (a, b) = differential("pgins", &pg, 61, 62, "pkt", "INSERT", "", q);
    compare(&columns(&pg, "udb", "pkt"), &a, &b);
}

#[test]
fn ulogd2_schema_with_insert_packet_full_gives_the_same_rows() {
    lab::skip_unless_root!();
    let schema = std::process::Command::new("zcat")
        .arg("/usr/share/doc/ulogd2-pgsql/pgsql-ulogd2.sql.gz")
        .output()
        .expect("zcat ulogd2's schema");
    assert!(
        schema.status.success(),
        "ulogd2-pgsql's pgsql-ulogd2.sql.gz is missing"
    );
    let schema = String::from_utf8(schema.stdout).unwrap();
    let pg = Pg::start("pgfull");
    for db in ["udb", "rdb"] {
        pg.createdb(db);
        pg.psql_script(db, &schema);
    }
    let q = "select * from ulog order by _id";
    let (a, b) = differential(
        "pgfull",
        &pg,
        63,
        64,
        "ulog",
        "INSERT_PACKET_FULL",
        "hw1:HWHDR,",
        q,
    );
    compare(&columns(&pg, "udb", "ulog"), &a, &b);
}

#[test]
fn a_prefix_with_quotes_backslashes_and_non_ascii_lands_intact() {
    lab::skip_unless_root!();
    let prefix = "it's \"q\" \\n \\ é€ ;--";
    let pg = Pg::start("pgpfx");
    pg.createdb("rdb");
    pg.psql_script(
        "rdb",
        "create table p (oob_prefix text, ip_saddr_str inet);",
    );
    let ns = Netns::new("pgpfx").unwrap();
    ns.log_input_prefixed(prefix, 65, None);
    let dir = TempDir::new("pgpfx");
    let d = Daemon::rulogd(
        &ns,
        dir.path(),
        &conf(&pg, 65, "rdb", "p", "INSERT", ""),
        &[65],
        &[],
    );
    ns.run_in_thread(|| udp_send("127.0.0.1:9999".parse().unwrap(), 2, 8).unwrap());
    assert!(lab::wait_until(Duration::from_secs(10), || pg
        .count("rdb", "select count(*) from p")
        >= 2));
    d.stop();
    let rows = pg.rows("rdb", "select oob_prefix, ip_saddr_str from p");
    assert_eq!(rows[0], [prefix.to_string(), "127.0.0.1".to_string()]);
}

#[test]
fn a_table_name_with_strftime_fields_is_created_like_the_template() {
    lab::skip_unless_root!();
    let pg = Pg::start("pgpart");
    pg.createdb("rdb");
    pg.psql_script(
        "rdb",
        "create table tmpl (_id bigserial primary key, oob_time_sec bigint, ip_saddr_str inet);",
    );
    let ns = Netns::new("pgpart").unwrap();
    ns.nft("table inet t {\n chain in {\n  type filter hook input priority 0;\n  log group 66\n }\n}\n")
        .unwrap();
    let dir = TempDir::new("pgpart");
    let text = conf(&pg, 66, "rdb", "ulog_%Y_%m_%d", "INSERT", "") + "template=\"tmpl\"\n";
    let d = Daemon::rulogd(&ns, dir.path(), &text, &[66], &[]);
    ns.run_in_thread(|| udp_send("127.0.0.1:9999".parse().unwrap(), 3, 8).unwrap());
    let day = String::from_utf8(
        std::process::Command::new("date")
            .arg("+ulog_%Y_%m_%d")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let q = format!("select count(*) from pg_tables where tablename = '{day}'");
    assert!(lab::wait_until(Duration::from_secs(10), || pg
        .count("rdb", &q)
        == 1
        && pg.count("rdb", &format!("select count(*) from {day}")) >= 3));
    d.stop();
    // Created with the template's serial id and index.
    assert_eq!(
        pg.count("rdb", &format!("select count(distinct _id) from {day}")),
        pg.count("rdb", &format!("select count(*) from {day}"))
    );
    assert_eq!(pg.count("rdb", "select count(*) from tmpl"), 0);
}

#[test]
fn the_shipped_schema_takes_rows_from_the_ulogd2_packet_stack() {
    lab::skip_unless_root!();
    let schema = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/sql/pgsql.sql"),
    )
    .unwrap();
    let pg = Pg::start("pgship");
    pg.createdb("rdb");
    pg.psql_script("rdb", &schema);
    let ns = Netns::new("pgship").unwrap();
    ns.nft("table inet t {\n chain in {\n  type filter hook input priority 0;\n  log prefix \"S\" group 67\n }\n}\n")
        .unwrap();
    let dir = TempDir::new("pgship");
    let text = conf(&pg, 67, "rdb", "ulog", "INSERT", "hw1:HWHDR,");
    let d = Daemon::rulogd(&ns, dir.path(), &text, &[67], &[]);
    ns.run_in_thread(|| udp_send("127.0.0.1:9999".parse().unwrap(), 3, 8).unwrap());
    assert!(lab::wait_until(Duration::from_secs(10), || pg.count(
        "rdb",
        "select count(*) from ulog where oob_prefix = 'S' and udp_dport = 9999"
    ) >= 3));
    d.stop();
}
