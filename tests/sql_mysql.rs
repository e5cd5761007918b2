//! MYSQL against ulogd2's MYSQL on the same packets, in a throw-away
//! MariaDB server: ulogd2's flat schema (Debian's mysql-ulogd2-flat.sql,
//! IP2BIN's binary(16) addresses) with plain INSERT, and its normalised
//! schema with the INSERT_PACKET_FULL function. Also a prefix with quotes,
//! backslashes and non-ASCII bytes, a table no key feeds, and the server
//! stopped under load: every record once, in order.
//!
//! Run: `cargo build --release -p rulogd && cargo test -p rulogd-tests --test sql_mysql`
//! (root; mariadb-server and ulogd2-mysql installed).

use rulogd_tests::maria::{Maria, PASS, USER};
use rulogd_tests::traffic::{udp_send, udp_send_paced, Mix};
use rulogd_tests::{self as lab, daemon, sql, Daemon, Netns, TempDir};
use std::time::{Duration, Instant};

const CONF: &str = concat!(
    lab::conf_global!("log1:NFLOG,base1:BASE,ifi1:IFINDEX,{FILTERS}my1:MYSQL"),
    "\n",
    lab::conf_nflog!(),
    "\n\
[my1]
db=\"{DB}\"
host=\"127.0.0.1\"
port={PORT}
user=\"{USER}\"
pass=\"{PASS}\"
table=\"{TABLE}\"
procedure=\"{PROC}\"
"
);

fn conf(my: &Maria, group: u16, db: &str, table: &str, proc_: &str, filters: &str) -> String {
    lab::fill(
        CONF,
        &[
            ("GROUP", group.to_string()),
            ("DB", db.to_string()),
            ("PORT", my.port().to_string()),
            ("USER", USER.to_string()),
            ("PASS", PASS.to_string()),
            ("TABLE", table.to_string()),
            ("PROC", proc_.to_string()),
            ("FILTERS", filters.to_string()),
        ],
    )
}

fn doc_schema(file: &str) -> String {
    let out = std::process::Command::new("zcat")
        .arg(format!("/usr/share/doc/ulogd2-mysql/{file}"))
        .output()
        .expect("zcat ulogd2's schema");
    assert!(out.status.success(), "ulogd2-mysql's {file} is missing");
    String::from_utf8(out.stdout).unwrap()
}

/// A select of every column of `rel`, binary ones as hex, in id order.
fn select_all(my: &Maria, db: &str, rel: &str) -> (Vec<String>, String) {
    let cols = my.rows(
        db,
        &format!(
            "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{rel}' ORDER BY ORDINAL_POSITION"
        ),
    );
    let names: Vec<String> = cols.iter().map(|c| c[0].clone()).collect();
    let list: Vec<String> = cols
        .iter()
        .map(|c| {
            if c[1].contains("binary") || c[1].contains("blob") {
                format!("HEX(`{}`)", c[0])
            } else {
                format!("`{}`", c[0])
            }
        })
        .collect();
    let q = format!("SELECT {} FROM `{rel}` ORDER BY `_id`", list.join(","));
    (names, q)
}

/// Runs ulogd2 (group `g1`, database `udb`) and rulogd (`g2`, `rdb`) with
/// the same config and traffic; compares every row of `rel` column by
/// column, except the packet times (two log rules, two timestamps).
fn differential(tag: &str, g1: u16, g2: u16, schema: &str, table: &str, proc_: &str, rel: &str) {
    let ns = Netns::new(tag).unwrap();
    let my = Maria::start(tag, ns.name());
    for db in ["udb", "rdb"] {
        my.createdb(db);
        my.script(db, schema);
    }
    // ulogd2's schemas store oob.protocol (an unsigned 16-bit key, 34525
    // for IPv6) in a signed smallint: strict mode refuses those rows (both
    // daemons lose them), the classic mode clamps them. Compare the rows
    // that the schema can hold.
    my.sql("", "SET GLOBAL sql_mode = ''");
    ns.nft(&format!(
        "table inet t {{\n chain in {{\n  type filter hook input priority 0;\n\
         \x20 tcp dport {p} return\n  tcp sport {p} return\n\
         \x20 log prefix \"IN\" group {g1}\n  log prefix \"IN\" group {g2}\n\
         \x20 udp dport 9999 drop\n }}\n}}\n",
        p = my.port()
    ))
    .unwrap();
    let dir = TempDir::new(tag);
    let filters = "ip2bin1:IP2BIN,hw1:HWHDR,";
    let u = Daemon::ulogd(
        &ns,
        dir.path(),
        &conf(&my, g1, "udb", table, proc_, filters),
        &[g1],
        &[],
    );
    let r = Daemon::rulogd(
        &ns,
        dir.path(),
        &conf(&my, g2, "rdb", table, proc_, filters),
        &[g2],
        &[],
    );
    ns.run_in_thread(|| Mix::SQL.send());
    for g in [g1, g2] {
        assert!(daemon::wait_drained(&ns, g, Duration::from_secs(5)));
    }
    let count = format!("SELECT COUNT(*) FROM `{rel}`");
    let done = lab::wait_until(Duration::from_secs(15), || {
        let n = my.count("udb", &count);
        n > 0 && my.count("rdb", &count) == n
    });
    u.stop();
    r.stop();
    let (cols, q) = select_all(&my, "udb", rel);
    let (a, b) = (my.rows("udb", &q), my.rows("rdb", &q));
    assert!(done, "ulogd2 wrote {} rows, rulogd {}", a.len(), b.len());
    assert!(a.len() > 30, "only {} rows", a.len());
    assert_eq!(a.len(), b.len());
    let mut v6 = 0;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        for (c, name) in cols.iter().enumerate() {
            if name.starts_with("oob_time") || name.starts_with("_id") {
                continue;
            }
            assert_eq!(
                x[c], y[c],
                "row {i} column {name}\nulogd2: {x:?}\nrulogd: {y:?}"
            );
        }
        v6 += usize::from(x.iter().any(|f| f == "00000000000000000000000000000001"));
    }
    assert!(v6 > 0, "no IPv6 loopback address among the rows");
}

#[test]
fn insert_rows_equal_ulogd2_rows_for_the_same_packets() {
    lab::skip_unless_root!();
    let schema = doc_schema("mysql-ulogd2-flat.sql.gz");
    differential("myins", 81, 82, &schema, "ulog2", "INSERT", "ulog2");
}

#[test]
fn ulogd2_schema_with_insert_packet_full_gives_the_same_rows() {
    lab::skip_unless_root!();
    let schema = doc_schema("mysql-ulogd2.sql.gz");
    differential(
        "myfull",
        83,
        84,
        &schema,
        "ulog",
        "INSERT_PACKET_FULL",
        "ulog",
    );
}

/// A small table in `rdb` and rulogd logging group `group` into it.
fn one_table(
    tag: &str,
    group: u16,
    table_sql: &str,
    extra: &str,
) -> (Netns, Maria, TempDir, String) {
    let ns = Netns::new(tag).unwrap();
    let my = Maria::start(tag, ns.name());
    my.createdb("rdb");
    my.sql("rdb", table_sql);
    let dir = TempDir::new(tag);
    let text = conf(&my, group, "rdb", "p", "INSERT", "ip2str1:IP2STR,") + extra;
    (ns, my, dir, text)
}

#[test]
fn a_prefix_with_quotes_backslashes_and_non_ascii_lands_intact() {
    lab::skip_unless_root!();
    let prefix = "it's \"q\" \\n \\ é€ ;--";
    let (ns, my, dir, text) = one_table(
        "mypfx",
        85,
        "CREATE TABLE p (_id serial, oob_prefix varchar(255), ip_saddr_str varchar(64)) \
         CHARACTER SET utf8mb4",
        "",
    );
    ns.log_input_prefixed(prefix, 85, Some(9999));
    let d = Daemon::rulogd(&ns, dir.path(), &text, &[85], &[]);
    ns.run_in_thread(|| udp_send("127.0.0.1:9999".parse().unwrap(), 2, 8).unwrap());
    assert!(lab::wait_until(Duration::from_secs(10), || my
        .count("rdb", "SELECT COUNT(*) FROM p")
        >= 2));
    d.stop();
    // HEX: the client's batch output would escape the backslashes.
    let rows = my.rows("rdb", "SELECT HEX(oob_prefix), ip_saddr_str FROM p");
    let hex: String = prefix.bytes().map(|b| format!("{b:02X}")).collect();
    assert_eq!(rows[0], [hex, "127.0.0.1".to_string()]);
}

#[test]
fn a_table_whose_columns_no_key_feeds_is_a_start_up_error_naming_them() {
    lab::skip_unless_root!();
    let (ns, _my, dir, text) = one_table(
        "mybad",
        86,
        "CREATE TABLE p (_id serial, oob_prefix text, no_such_key int, ip_saddr_str text, nor_this int)",
        "",
    );
    let (status, log) = daemon::run_in(&ns, dir.path(), "bad", &text);
    assert_eq!(status.code(), Some(1), "{log}");
    sql::assert_unfed_columns_named(&log, "my1", "`p`");
}

#[test]
fn a_server_stopped_under_load_loses_nothing() {
    lab::skip_unless_root!();
    let (ns, mut my, dir, text) = one_table(
        "myout",
        87,
        "CREATE TABLE p (_id bigint auto_increment primary key, oob_seq_local bigint, \
         udp_dport int, ip_saddr_str varchar(64))",
        "",
    );
    let text = text.replace("group=87\n", "group=87\nseq_local=1\n")
        + &format!(
            "reconnect=1\nspool_dir=\"{}\"\nwhen_full=\"block\"\n",
            lab::path_str(&dir.path().join("spool"))
        );
    ns.nft(&lab::counted_ruleset(
        "  udp dport 9991 counter name \"c\" log group 87\n  udp dport 9991 drop",
    ))
    .unwrap();
    let d = Daemon::rulogd(&ns, dir.path(), &text, &[87], &[]);
    // 3 s up, 10 s down, 3 s up: 16 s at 5 000 records/s.
    let (rate, secs) = (5_000u64, 16);
    let total = (rate * secs) as usize;
    let sent = std::thread::scope(|s| {
        let h = s.spawn(|| {
            ns.run_in_thread(|| {
                udp_send_paced("127.0.0.1:9991".parse().unwrap(), total, 8, rate)
                    .unwrap()
                    .1
            })
        });
        std::thread::sleep(Duration::from_secs(3));
        my.stop_server();
        std::thread::sleep(Duration::from_secs(10));
        my.start_server();
        h.join().unwrap()
    });
    assert!(daemon::wait_drained(&ns, 87, Duration::from_secs(10)));
    let drops = daemon::drops_note(&ns, 87);
    // What reached the log rule (a loaded loopback may drop before it).
    let logged = ns.counter("inet", "t", "c").unwrap();
    let cap = Instant::now() + Duration::from_secs(120);
    let mut got = 0;
    while Instant::now() < cap {
        got = my.count("rdb", "SELECT COUNT(*) FROM p");
        if got >= logged {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let seqs: Vec<u64> = my
        .rows("rdb", "SELECT oob_seq_local FROM p ORDER BY _id")
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    let log = d.log_text();
    d.stop();
    assert_eq!(got, logged, "rows vs packets ({sent} sent; {drops})\n{log}");
    // Once and in order: the sequence numbers count up from 0 with no gap.
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(*s, i as u64, "row {i}");
    }
}

#[test]
fn the_shipped_schema_takes_rows_from_the_ulogd2_packet_stack() {
    lab::skip_unless_root!();
    let schema = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/sql/mysql.sql"),
    )
    .unwrap();
    let ns = Netns::new("myship").unwrap();
    let my = Maria::start("myship", ns.name());
    my.createdb("rdb");
    my.script("rdb", &schema);
    ns.nft("table inet t {\n chain in {\n  type filter hook input priority 0;\n  udp dport 9999 log prefix \"S\" group 88\n }\n}\n")
        .unwrap();
    let dir = TempDir::new("myship");
    let text = conf(
        &my,
        88,
        "rdb",
        "ulog",
        "INSERT",
        "ip2str1:IP2STR,hw1:HWHDR,",
    );
    let d = Daemon::rulogd(&ns, dir.path(), &text, &[88], &[]);
    ns.run_in_thread(|| {
        udp_send("127.0.0.1:9999".parse().unwrap(), 3, 8).unwrap();
        udp_send("[::1]:9999".parse().unwrap(), 3, 8).unwrap();
    });
    let q = "SELECT COUNT(*) FROM ulog WHERE oob_prefix = 'S' AND udp_dport = 9999 \
             AND ip_saddr_str IN ('127.0.0.1', '::1')";
    let ok = lab::wait_until(Duration::from_secs(10), || my.count("rdb", q) >= 6);
    let log = d.log_text();
    d.stop();
    assert!(ok, "{}\n{log}", my.sql("rdb", "SELECT * FROM ulog"));
    // IPv6's oob.protocol (34525) fits the schema's unsigned column.
    assert_eq!(
        my.count(
            "rdb",
            "SELECT COUNT(*) FROM ulog WHERE oob_protocol = 34525"
        ),
        3
    );
}
