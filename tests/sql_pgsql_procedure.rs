//! rulogd's set-wise INSERT_PACKET_FULL (one INSERT per table for a batch)
//! against ulogd2 calling the function once per row, on the same packets,
//! each into its own copy of ulogd2's schema (Debian's pgsql-ulogd2.sql):
//! every table must come out the same, ids included. The packets cover
//! the function's branches: TCP, UDP, ICMP and ICMPv6 on loopback (a
//! `hwhdr` row each), and UDP and ICMP from a peer over a veth pair
//! (Ethernet: a `mac` row looked up or made, shared by repeats). rulogd's
//! `ulog2` is locked by another session during the traffic, so its rows
//! wait in the queue and come as one large batch, which is split over two
//! connections.
//!
//! Run: `cargo build -p rulogd && cargo test -p rulogd-tests --test sql_pgsql_procedure`
//! (root; PostgreSQL 15 server binaries, ulogd2 and ulogd2-pgsql).

use rulogd_tests::netns::MAIN_V4;
use rulogd_tests::pg::{ulogd2_schema, Pg};
use rulogd_tests::traffic::{icmp_echo, tcp_session, udp_send};
use rulogd_tests::{self as lab, daemon, Daemon, Netns, TempDir};
use std::time::Duration;

const CONF: &str = "\
[global]
logfile=\"{LOGFILE}\"
loglevel=1
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,mac2str1:HWHDR,pg1:PGSQL

[log1]
group={GROUP}

[pg1]
db=\"{DB}\"
host=\"{HOST}\"
port={PORT}
user=\"postgres\"
table=\"ulog\"
procedure=\"INSERT_PACKET_FULL\"
";

fn conf(pg: &Pg, group: u16, db: &str) -> String {
    lab::fill(
        CONF,
        &[
            ("GROUP", group.to_string()),
            ("DB", db.to_string()),
            ("HOST", pg.host()),
            ("PORT", pg.port().to_string()),
        ],
    )
}

fn traffic(ns: &Netns) {
    ns.run_in_thread(|| {
        udp_send("127.0.0.1:9999".parse().unwrap(), 20, 64).unwrap();
        udp_send("[::1]:9999".parse().unwrap(), 5, 64).unwrap();
        tcp_session("127.0.0.1:5001".parse().unwrap(), 3000, 500).unwrap();
        tcp_session("[::1]:5001".parse().unwrap(), 3000, 500).unwrap();
        assert_eq!(icmp_echo("127.0.0.1".parse().unwrap(), 7, 1, 3).unwrap(), 3);
        assert_eq!(icmp_echo("::1".parse().unwrap(), 7, 1, 3).unwrap(), 3);
    });
    ns.run_in_peer(|| {
        // One burst large enough to fill a batch that is split in two (a
        // part has at least 32 rows): the smaller bursts above may each be
        // handed over as a batch of its own while the writer waits.
        udp_send(format!("{MAIN_V4}:9999").parse().unwrap(), 300, 32).unwrap();
        assert_eq!(icmp_echo(MAIN_V4.parse().unwrap(), 9, 1, 4).unwrap(), 4);
    });
}

/// Each table of the schema, ordered by its id; `ulog2` without the packet
/// times (two log rules, two timestamps) and its insertion time.
const TABLES: &[&str] = &[
    "select _id, oob_hook, oob_prefix, oob_mark, oob_in, oob_out, oob_family, ip_saddr_str, \
     ip_daddr_str, ip_protocol, ip_tos, ip_ttl, ip_totlen, ip_ihl, ip_csum, ip_id, ip_fragoff, \
     ip6_payloadlen, ip6_priority, ip6_hoplimit, ip6_flowlabel, ip6_fragoff, ip6_fragid, \
     label, mac_id from ulog2 order by _id",
    "select * from tcp order by _tcp_id",
    "select * from udp order by _udp_id",
    "select * from sctp order by _sctp_id",
    "select * from icmp order by _icmp_id",
    "select * from icmpv6 order by _icmpv6_id",
    "select * from hwhdr order by _hw_id",
    "select * from mac order by _mac_id",
];

#[test]
fn set_wise_insert_packet_full_gives_the_tables_of_one_call_per_row() {
    lab::skip_unless_root!();
    let pg = Pg::start("pgset");
    let schema = ulogd2_schema();
    for db in ["udb", "rdb"] {
        pg.createdb(db);
        pg.psql_script(db, &schema);
    }
    let ns = Netns::with_peer("pgset").unwrap();
    let (g1, g2) = (65, 66);
    ns.nft(&format!(
        "table inet t {{\n chain in {{\n  type filter hook input priority 0;\n\
         \x20 log prefix \"IN\" group {g1}\n  log prefix \"IN\" group {g2}\n\
         \x20 udp dport 9999 drop\n }}\n}}\n"
    ))
    .unwrap();
    let dir = TempDir::new("pgset");
    let u = Daemon::ulogd(&ns, dir.path(), &conf(&pg, g1, "udb"), &[g1], &[]);
    let r = Daemon::rulogd(&ns, dir.path(), &conf(&pg, g2, "rdb"), &[g2], &[]);
    let lock = pg.lock_table("rdb", "ulog2");
    traffic(&ns);
    for g in [g1, g2] {
        assert!(daemon::wait_drained(&ns, g, Duration::from_secs(5)));
    }
    drop(lock);
    let count = "select count(*) from ulog2";
    let done = lab::wait_until(Duration::from_secs(15), || {
        let n = pg.count("udb", count);
        n > 0 && pg.count("rdb", count) == n
    });
    let log = r.log_text();
    u.stop();
    r.stop();
    assert!(
        done,
        "ulogd2 {} rows, rulogd {}",
        pg.count("udb", count),
        pg.count("rdb", count)
    );
    assert!(
        log.contains("set-wise") && log.contains("spread over 2 connections"),
        "rulogd did not go set-wise over two connections:\n{log}"
    );
    for q in TABLES {
        let (a, b) = (pg.rows("udb", q), pg.rows("rdb", q));
        assert_eq!(a, b, "{q}\nulogd2: {a:?}\nrulogd: {b:?}");
    }
    let n = |db: &str, q: &str| pg.count(db, q);
    assert!(n("udb", count) > 60, "packets logged: {}", n("udb", count));
    assert!(n("udb", "select count(*) from mac") >= 1, "no mac row");
    assert!(n("udb", "select count(*) from ulog2 where mac_id is not null") >= 30);
    assert!(n("udb", "select count(*) from hwhdr") >= 30);
}

/// A table naming the columns (keys), and routines that write them into
/// `got` with the order they were called in.
const ROUTINES: &str = "\
CREATE TABLE cols (ip_id integer, udp_dport integer);
CREATE TABLE got (n bigserial PRIMARY KEY, ip_id integer, udp_dport integer, via text);
CREATE PROCEDURE put_row(a integer, b integer) LANGUAGE sql
  AS $$ INSERT INTO got (ip_id, udp_dport, via) VALUES (a, b, 'call') $$;
CREATE FUNCTION twice(a integer, b integer) RETURNS integer LANGUAGE sql
  AS $$ INSERT INTO got (ip_id, udp_dport, via) VALUES (a, b, 'f2'); SELECT 1 $$;
CREATE FUNCTION twice(a text) RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;
";

const SIMPLE: &str = "\
[global]
logfile=\"{LOGFILE}\"
loglevel=1
stack=log1:NFLOG,base1:BASE,pg1:PGSQL

[log1]
group={GROUP}

[pg1]
db=\"r\"
host=\"{HOST}\"
port={PORT}
user=\"postgres\"
table=\"cols\"
procedure=\"{PROC}\"
";

/// `CALL p` goes staged (a PL/pgSQL loop of CALLs over the batch); an
/// overloaded function is called once per row. Either way every packet
/// is one row, in the order the packets came (one connected socket: IP
/// ids one apart).
#[test]
fn a_procedure_call_and_an_overloaded_function_write_every_row_in_order() {
    lab::skip_unless_root!();
    let pg = Pg::start("pgproc");
    pg.createdb("r");
    pg.psql_script("r", ROUTINES);
    for (g, proc_, via, mode) in [
        (67, "CALL put_row", "call", "staging table"),
        (68, "twice", "f2", "once per row"),
    ] {
        let ns = Netns::new("pgproc").unwrap();
        ns.nft(&format!(
            "table inet t {{\n chain in {{\n  type filter hook input priority 0;\n\
             \x20 udp dport 9999 log group {g}\n  udp dport 9999 drop\n }}\n}}\n"
        ))
        .unwrap();
        let dir = TempDir::new("pgproc");
        let conf = lab::fill(
            SIMPLE,
            &[
                ("GROUP", g.to_string()),
                ("HOST", pg.host()),
                ("PORT", pg.port().to_string()),
                ("PROC", proc_.to_string()),
            ],
        );
        let d = Daemon::rulogd(&ns, dir.path(), &conf, &[g], &[]);
        ns.run_in_thread(|| {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.connect("127.0.0.1:9999").unwrap();
            for _ in 0..300 {
                s.send(b"p").unwrap();
            }
        });
        assert!(daemon::wait_drained(&ns, g, Duration::from_secs(5)));
        let q = format!("select count(*) from got where via = '{via}'");
        let done = lab::wait_until(Duration::from_secs(15), || pg.count("r", &q) >= 300);
        let log = d.log_text();
        d.stop();
        assert!(done, "{proc_}: {} rows\n{log}", pg.count("r", &q));
        assert!(log.contains(mode), "{proc_}: not `{mode}`:\n{log}");
        let ids: Vec<u16> = pg
            .psql(
                "r",
                &format!("select ip_id from got where via = '{via}' order by n"),
            )
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(ids.len(), 300);
        assert!(
            ids.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 1),
            "{proc_}: out of order: {ids:?}"
        );
    }
}
