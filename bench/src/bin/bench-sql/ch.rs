//! bench-sql's ClickHouse: the test lab's throw-away clickhouse-server 18.16
//! inside the run's namespace, the bench table as a MergeTree, and its row
//! count over HTTP.

use rulogd_tests::clickhouse::{ClickHouse, PASS, USER};
use rulogd_tests::Netns;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The PGSQL bench table's 18 columns in ClickHouse's types: the addresses
/// are IP2STR's text (which PostgreSQL's inet parses), the keys a packet
/// may lack Nullable as in conf/sql/clickhouse-packets.sql, whose
/// partitioning and order the table shares.
const TABLE: &str = "CREATE TABLE bench (oob_time_sec DateTime, oob_time_usec UInt32, \
oob_prefix String, oob_hook UInt8, oob_mark UInt32, oob_in String, oob_out String, \
oob_family UInt8, raw_pktlen UInt32, ip_saddr_str String, ip_daddr_str String, \
ip_protocol Nullable(UInt8), ip_ttl Nullable(UInt8), ip_totlen Nullable(UInt16), \
ip_id Nullable(UInt16), udp_sport Nullable(UInt16), udp_dport Nullable(UInt16), \
udp_len Nullable(UInt16)) ENGINE = MergeTree PARTITION BY toYYYYMMDD(oob_time_sec) \
ORDER BY (oob_time_sec, oob_prefix)";

/// A fresh server in `ns` with an empty bench table (database `default`).
pub fn start(ns: &Netns) -> Result<ClickHouse, String> {
    let ch = ClickHouse::start("bsql", ns.name());
    ch.try_query(TABLE)
        .map_err(|e| format!("create table: {e}"))?;
    Ok(ch)
}

/// The CLICKHOUSE section's server lines.
pub fn conf(ch: &ClickHouse) -> String {
    format!(
        "url=\"{}\"\ntable=\"bench\"\nuser=\"{USER}\"\npassword=\"{PASS}\"\n",
        ch.url()
    )
}

/// Rows in the bench table, or None while the server is away.
/// `SELECT count()` on a MergeTree adds up its parts' row counts without
/// reading them, and one HTTP request costs far less than a
/// clickhouse-client process would on 2 cores. The socket is made in the
/// run's namespace, where the server listens.
pub fn count(ns: &Netns, ch: &ClickHouse) -> Option<u64> {
    let port = ch.http_port();
    let mut s = ns
        .run_in_thread(move || TcpStream::connect(("127.0.0.1", port)))
        .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let q = "SELECT count() FROM bench";
    // HTTP/1.0: the server closes the connection after the answer, so the
    // answer ends at EOF.
    write!(
        s,
        "POST / HTTP/1.0\r\nX-ClickHouse-User: {USER}\r\nX-ClickHouse-Key: {PASS}\r\n\
         Content-Length: {}\r\n\r\n{q}",
        q.len()
    )
    .ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let resp = String::from_utf8_lossy(&resp);
    let (head, body) = resp.split_once("\r\n\r\n")?;
    if head.split(' ').nth(1) != Some("200") {
        return None;
    }
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        // The number fits in the first chunk: "<hex size>\r\n<data>\r\n0…".
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        rest.get(..size)?
    } else {
        body
    };
    body.trim().parse().ok()
}
