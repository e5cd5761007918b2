//! ulogd2's own `INSERT_PACKET_FULL` (pgsql-ulogd2.sql) done set-wise: a
//! staged batch goes into `ulog2`, `tcp`, `udp`, `sctp`, `icmp`, `icmpv6`,
//! `hwhdr` and `mac` with one INSERT per table instead of a PL/pgSQL call
//! (and its nested SQL functions) per row, which costs the server ~90 µs a
//! row.
//!
//! It is used only where the result is provably that of calling the
//! function row by row: the nine routines are ulogd2's, byte for byte (a
//! digest of their names, argument and result types, languages and
//! bodies), the two ids come from the sequences the functions read back,
//! `ulog2.mac_id` has no default, and no table has a rule or a trigger of
//! its own (foreign keys are checked at the end of each INSERT, after the
//! rows they need). The rows then come out the same: ids drawn from
//! `ulog2__id_seq` in row order, each protocol's row where the function's
//! IF would put it (`ip_protocol` NULL: none; `raw_type` NULL or not 1:
//! `hwhdr`), a `mac` row looked up as INSERT_OR_SELECT_MAC does (a NULL
//! `mac_daddr` matches NULL, a NULL `mac_protocol` matches nothing) and
//! made, with ids in order of first use, where none is found. Values pass
//! through the same casts (the staging columns have the argument types).
//! Only physical details differ: `ulog2` rows get their `mac_id` in the
//! INSERT rather than by a later UPDATE, and a batch that fails has drawn
//! ids for all its rows (the row-by-row retry then draws new ones).

use super::sort;
use postgres::Client;

/// The digest `known` compares against: md5 over the nine routines of
/// Debian's pgsql-ulogd2.sql (ulogd2 2.0.8), see `DIGEST_SQL`.
const DIGEST: &str = "1124b661f9b05d6dba5e7374fd6b33ea";

/// Digest of what the server has under ulogd2's routine names.
const DIGEST_SQL: &str = "\
SELECT md5(string_agg(p.proname || '(' || p.proargtypes::text || ')' || p.prorettype::text \
       || ':' || l.lanname || ':' || p.prosrc, '|' ORDER BY p.proname)) \
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang \
WHERE pg_function_is_visible(p.oid) AND p.proname IN ('insert_packet_full', \
 'insert_ip_packet_full', 'insert_tcp_full', 'insert_udp', 'insert_sctp', 'insert_icmp', \
 'insert_icmpv6', 'insert_hardware_header', 'insert_or_select_mac')";

/// True when the schema's tables have only what the functions expect.
const TABLES_SQL: &str = "\
SELECT count(*) = 8 \
   AND bool_and(c.relkind = 'r') \
   AND NOT bool_or(EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)) \
   AND NOT bool_or(EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid)) \
   AND (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a \
        ON a.attrelid = d.adrelid AND a.attnum = d.adnum \
        WHERE d.adrelid = to_regclass('ulog2') AND a.attname = '_id') \
       = 'nextval(''ulog2__id_seq''::regclass)' \
   AND (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a \
        ON a.attrelid = d.adrelid AND a.attnum = d.adnum \
        WHERE d.adrelid = to_regclass('mac') AND a.attname = '_mac_id') \
       = 'nextval(''mac__id_seq''::regclass)' \
   AND NOT EXISTS (SELECT 1 FROM pg_attrdef d JOIN pg_attribute a \
        ON a.attrelid = d.adrelid AND a.attnum = d.adnum \
        WHERE d.adrelid = to_regclass('ulog2') AND a.attname = 'mac_id' \
        AND pg_get_expr(d.adbin, d.adrelid) <> 'NULL::bigint') \
FROM pg_class c WHERE c.oid IN (to_regclass('ulog2'), to_regclass('mac'), \
 to_regclass('hwhdr'), to_regclass('tcp'), to_regclass('udp'), to_regclass('sctp'), \
 to_regclass('icmp'), to_regclass('icmpv6'))";

/// Whether `name` (59 arguments) is ulogd2's INSERT_PACKET_FULL over its
/// own tables, so that `MAC_SQL` and `MAIN_SQL` may stand for it.
pub(super) fn known(c: &mut Client, name: &str, nargs: usize) -> Result<bool, super::DbError> {
    if !name.trim().eq_ignore_ascii_case("insert_packet_full") || nargs != 59 {
        return Ok(false);
    }
    let digest: Option<String> = c.query_one(DIGEST_SQL, &[]).map_err(sort)?.get(0);
    if digest.as_deref() != Some(DIGEST) {
        log::debug!("INSERT_PACKET_FULL's routines differ from ulogd2's ({digest:?})");
        return Ok(false);
    }
    let tables: Option<bool> = c.query_one(TABLES_SQL, &[]).map_err(sort)?.get(0);
    Ok(tables == Some(true))
}

/// Temporary tables the statements use, made once per connection.
pub(super) const SETUP_SQL: &str = "\
DROP TABLE IF EXISTS pg_temp.rulogd_mac, pg_temp.rulogd_macnew; \
CREATE TEMPORARY TABLE rulogd_mac (seq bigint PRIMARY KEY, sa macaddr, da macaddr, \
 proto integer, id bigint) ON COMMIT DELETE ROWS; \
CREATE TEMPORARY TABLE rulogd_macnew (first bigint PRIMARY KEY, id bigint) ON COMMIT DELETE ROWS";

/// The `mac` statements, run in turn while the first finds rows with
/// `raw_type` 1 (over the staging table: `a1`…`a59` are INSERT_PACKET_FULL's
/// arguments in order). A volatile `nextval` in a select list is evaluated
/// after the ORDER BY: ids follow `seq`.
pub(super) const MAC_SQL: [&str; 5] = [
    "INSERT INTO pg_temp.rulogd_mac (seq, sa, da, proto) \
     SELECT s.seq, s.a53::macaddr, s.a54::macaddr, s.a55 FROM pg_temp.rulogd_stage s \
     WHERE s.a51 = 1",
    "UPDATE pg_temp.rulogd_mac m SET id = (SELECT x._mac_id FROM mac x \
     WHERE x.mac_saddr = m.sa \
     AND CASE WHEN m.da IS NULL THEN x.mac_daddr IS NULL ELSE x.mac_daddr = m.da END \
     AND x.mac_protocol = m.proto LIMIT 1)",
    "INSERT INTO pg_temp.rulogd_macnew (first, id) \
     SELECT f.first, nextval('mac__id_seq') FROM ( \
      SELECT min(seq) AS first FROM pg_temp.rulogd_mac \
       WHERE id IS NULL AND sa IS NOT NULL AND proto IS NOT NULL GROUP BY sa, da, proto \
      UNION ALL SELECT seq FROM pg_temp.rulogd_mac \
       WHERE id IS NULL AND (sa IS NULL OR proto IS NULL)) f ORDER BY f.first",
    "INSERT INTO mac (_mac_id, mac_saddr, mac_daddr, mac_protocol) \
     SELECT n.id, m.sa, m.da, m.proto FROM pg_temp.rulogd_macnew n \
     JOIN pg_temp.rulogd_mac m ON m.seq = n.first ORDER BY n.first",
    "UPDATE pg_temp.rulogd_mac m SET id = n.id FROM pg_temp.rulogd_macnew n \
     JOIN pg_temp.rulogd_mac f ON f.seq = n.first \
     WHERE m.id IS NULL AND (m.seq = n.first OR (m.sa IS NOT NULL AND m.proto IS NOT NULL \
      AND m.sa = f.sa AND m.proto = f.proto AND m.da IS NOT DISTINCT FROM f.da))",
];

/// The rows of every other table in one statement: the staged rows with
/// their ids drawn in `seq` order, once (a materialized CTE), feeding one
/// INSERT per table. Foreign keys to `ulog2` are checked at the end of the
/// statement, when its rows are in.
pub(super) const MAIN_SQL: &str = "\
WITH s AS MATERIALIZED (SELECT st.*, nextval('ulog2__id_seq') AS id \
  FROM pg_temp.rulogd_stage st ORDER BY st.seq), \
u AS (INSERT INTO ulog2 (_id, oob_time_sec, oob_time_usec, oob_hook, oob_prefix, oob_mark, \
 oob_in, oob_out, oob_family, ip_saddr_str, ip_daddr_str, ip_protocol, ip_tos, ip_ttl, \
 ip_totlen, ip_ihl, ip_csum, ip_id, ip_fragoff, ip6_payloadlen, ip6_priority, ip6_hoplimit, \
 ip6_flowlabel, ip6_fragoff, ip6_fragid, label, mac_id) \
 SELECT s.id, s.a1, s.a2, s.a3, s.a4, s.a5, s.a6, s.a7, s.a8, s.a9, s.a10, s.a11, s.a12, \
 s.a13, s.a14, s.a15, s.a16, s.a17, s.a18, s.a19, s.a20, s.a21, s.a22, s.a23, s.a24, s.a56, \
 m.id FROM s LEFT JOIN pg_temp.rulogd_mac m ON m.seq = s.seq ORDER BY s.seq), \
t AS (INSERT INTO tcp (_tcp_id, tcp_sport, tcp_dport, tcp_seq, tcp_ackseq, tcp_window, \
 tcp_urg, tcp_urgp, tcp_ack, tcp_psh, tcp_rst, tcp_syn, tcp_fin) \
 SELECT s.id, s.a25, s.a26, s.a27, s.a28, s.a29, s.a30, s.a31, s.a32, s.a33, s.a34, s.a35, \
 s.a36 FROM s WHERE s.a11 = 6 ORDER BY s.seq), \
d AS (INSERT INTO udp (_udp_id, udp_sport, udp_dport, udp_len) \
 SELECT s.id, s.a37, s.a38, s.a39 FROM s WHERE s.a11 = 17 ORDER BY s.seq), \
c AS (INSERT INTO sctp (_sctp_id, sctp_sport, sctp_dport, sctp_csum) \
 SELECT s.id, s.a57, s.a58, s.a59 FROM s WHERE s.a11 = 132 ORDER BY s.seq), \
i AS (INSERT INTO icmp (_icmp_id, icmp_type, icmp_code, icmp_echoid, icmp_echoseq, \
 icmp_gateway, icmp_fragmtu) \
 SELECT s.id, s.a40, s.a41, s.a42, s.a43, s.a44, s.a45 FROM s WHERE s.a11 = 1 ORDER BY s.seq), \
j AS (INSERT INTO icmpv6 (_icmpv6_id, icmpv6_type, icmpv6_code, icmpv6_echoid, \
 icmpv6_echoseq, icmpv6_csum) \
 SELECT s.id, s.a46, s.a47, s.a48, s.a49, s.a50 FROM s WHERE s.a11 = 58 ORDER BY s.seq), \
h AS (INSERT INTO hwhdr (_hw_id, raw_type, raw_header) \
 SELECT s.id, s.a51, s.a52 FROM s WHERE s.a51 IS DISTINCT FROM 1 ORDER BY s.seq) \
SELECT 1";
