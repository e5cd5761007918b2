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
//!
//! Because the ids are drawn for the whole batch first (in row order) and
//! the `mac` rows are settled first too, the rest of a batch can be split
//! over several connections (`connections=`, default 2): PostgreSQL runs
//! one backend per connection, and one backend is the limit (~20 µs of
//! server CPU a row for this schema's eight indexes and its foreign key).
//! The parts' transactions are committed in row order, and a failure in
//! one rolls back those after it, so the table only ever holds a prefix of
//! the batch; the writer's retry skips that prefix (`Unknown` in mod.rs).
//!
//! Only physical details differ from one call per row: `ulog2` rows get
//! their `mac_id` in the INSERT rather than by a later UPDATE, a batch that
//! fails has drawn ids for all its rows (the row-by-row retry then draws
//! new ones), and the `mac` rows a batch needs are committed before its
//! other rows (so a batch that fails may leave a `mac` row no packet row
//! uses yet; the retry finds and uses it).

use super::copy::{copy_binary, copy_text, number};
use super::{sort, Pg, Unknown};
use crate::sql::driver::DbError;
use crate::sql::row::Val;
use postgres::{Client, Statement};

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

/// Type OID of `bigint`, the staged `id` and `mac_id` columns.
const OID_INT8: u32 = 20;

/// Temporary tables the statements use, made once per connection:
/// `rulogd_full` holds a part's rows with their drawn ids, `rulogd_macin`
/// the batch's `mac` arguments (a51, a53, a54, a55), the other two the
/// `mac` lookup.
fn setup_sql(type_names: &[String]) -> String {
    let cols: Vec<String> = type_names
        .iter()
        .enumerate()
        .map(|(i, t)| format!("a{} {t}", i + 1))
        .collect();
    format!(
        "DROP TABLE IF EXISTS pg_temp.rulogd_mac, pg_temp.rulogd_macnew, \
         pg_temp.rulogd_macin, pg_temp.rulogd_full; \
         CREATE TEMPORARY TABLE rulogd_full (id bigint, mac_id bigint, {}) ON COMMIT DELETE ROWS; \
         CREATE TEMPORARY TABLE rulogd_macin (seq bigint, a51 {}, a53 {}, a54 {}, a55 {}) \
          ON COMMIT DELETE ROWS; \
         CREATE TEMPORARY TABLE rulogd_mac (seq bigint PRIMARY KEY, sa macaddr, da macaddr, \
          proto integer, id bigint) ON COMMIT DELETE ROWS; \
         CREATE TEMPORARY TABLE rulogd_macnew (first bigint PRIMARY KEY, id bigint) \
          ON COMMIT DELETE ROWS",
        cols.join(", "),
        type_names[50],
        type_names[52],
        type_names[53],
        type_names[54],
    )
}

/// The batch's ids, drawn from `ulog2__id_seq` in row order (`nextval` is
/// evaluated as the series is read, and the aggregate sorts by it).
const IDS_SQL: &str = "SELECT array_agg(nextval('ulog2__id_seq') ORDER BY g) \
FROM generate_series(1, $1::integer) g";

/// The `mac` statements, run in turn while the first finds rows with
/// `raw_type` 1 (`seq` is the row's place in the batch). A volatile
/// `nextval` in a select list is evaluated after the ORDER BY: ids follow
/// `seq`. The last reads the ids back.
const MAC_SQL: [&str; 6] = [
    "INSERT INTO pg_temp.rulogd_mac (seq, sa, da, proto) \
     SELECT m.seq, m.a53::macaddr, m.a54::macaddr, m.a55 FROM pg_temp.rulogd_macin m \
     WHERE m.a51 = 1",
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
    "SELECT seq, id FROM pg_temp.rulogd_mac WHERE id IS NOT NULL",
];

/// A part's rows into every other table in one statement, with the ids
/// and `mac` ids staged beside the arguments. Foreign keys to `ulog2` are
/// checked at the end of the statement, when its rows are in.
const MAIN_SQL: &str = "\
WITH u AS (INSERT INTO ulog2 (_id, oob_time_sec, oob_time_usec, oob_hook, oob_prefix, oob_mark, \
 oob_in, oob_out, oob_family, ip_saddr_str, ip_daddr_str, ip_protocol, ip_tos, ip_ttl, \
 ip_totlen, ip_ihl, ip_csum, ip_id, ip_fragoff, ip6_payloadlen, ip6_priority, ip6_hoplimit, \
 ip6_flowlabel, ip6_fragoff, ip6_fragid, label, mac_id) \
 SELECT s.id, s.a1, s.a2, s.a3, s.a4, s.a5, s.a6, s.a7, s.a8, s.a9, s.a10, s.a11, s.a12, \
 s.a13, s.a14, s.a15, s.a16, s.a17, s.a18, s.a19, s.a20, s.a21, s.a22, s.a23, s.a24, s.a56, \
 s.mac_id FROM pg_temp.rulogd_full s), \
t AS (INSERT INTO tcp (_tcp_id, tcp_sport, tcp_dport, tcp_seq, tcp_ackseq, tcp_window, \
 tcp_urg, tcp_urgp, tcp_ack, tcp_psh, tcp_rst, tcp_syn, tcp_fin) \
 SELECT s.id, s.a25, s.a26, s.a27, s.a28, s.a29, s.a30, s.a31, s.a32, s.a33, s.a34, s.a35, \
 s.a36 FROM pg_temp.rulogd_full s WHERE s.a11 = 6), \
d AS (INSERT INTO udp (_udp_id, udp_sport, udp_dport, udp_len) \
 SELECT s.id, s.a37, s.a38, s.a39 FROM pg_temp.rulogd_full s WHERE s.a11 = 17), \
c AS (INSERT INTO sctp (_sctp_id, sctp_sport, sctp_dport, sctp_csum) \
 SELECT s.id, s.a57, s.a58, s.a59 FROM pg_temp.rulogd_full s WHERE s.a11 = 132), \
i AS (INSERT INTO icmp (_icmp_id, icmp_type, icmp_code, icmp_echoid, icmp_echoseq, \
 icmp_gateway, icmp_fragmtu) \
 SELECT s.id, s.a40, s.a41, s.a42, s.a43, s.a44, s.a45 FROM pg_temp.rulogd_full s \
 WHERE s.a11 = 1), \
j AS (INSERT INTO icmpv6 (_icmpv6_id, icmpv6_type, icmpv6_code, icmpv6_echoid, \
 icmpv6_echoseq, icmpv6_csum) \
 SELECT s.id, s.a46, s.a47, s.a48, s.a49, s.a50 FROM pg_temp.rulogd_full s WHERE s.a11 = 58), \
h AS (INSERT INTO hwhdr (_hw_id, raw_type, raw_header) \
 SELECT s.id, s.a51, s.a52 FROM pg_temp.rulogd_full s WHERE s.a51 IS DISTINCT FROM 1) \
SELECT 1";

/// The fewest rows a part of a split batch has: below, one connection.
const MIN_PART: usize = 32;

/// The prepared statements and COPY texts of the set-wise path, for the
/// first connection (the others have a [`Lane`] each).
pub(super) struct Plan {
    setup: String,
    ids: Statement,
    mac: Vec<Statement>,
    main: Statement,
    /// `bigint, bigint` and the argument types: `rulogd_full`'s columns.
    types: Vec<u32>,
    mac_types: Vec<u32>,
    copy_bin: String,
    copy_txt: String,
    mac_bin: String,
    mac_txt: String,
}

/// Another connection a batch is spread over, with its own temporary
/// tables and statement.
pub(super) struct Lane {
    client: Client,
    main: Statement,
    buf: Vec<u8>,
}

impl Plan {
    /// Makes the temporary tables on `c` and prepares the statements;
    /// `type_names` and `types` are the function's 59 arguments.
    pub(super) fn new(
        c: &mut Client,
        type_names: &[String],
        types: &[u32],
    ) -> Result<Plan, DbError> {
        let setup = setup_sql(type_names);
        c.batch_execute(&setup).map_err(sort)?;
        let mac = MAC_SQL
            .iter()
            .map(|q| c.prepare(q))
            .collect::<Result<Vec<_>, _>>()
            .map_err(sort)?;
        let list: Vec<String> = (1..=types.len()).map(|i| format!("a{i}")).collect();
        let full = format!("pg_temp.rulogd_full (id, mac_id, {})", list.join(", "));
        let macin = "pg_temp.rulogd_macin (seq, a51, a53, a54, a55)";
        let mut all = vec![OID_INT8, OID_INT8];
        all.extend_from_slice(types);
        Ok(Plan {
            ids: c.prepare(IDS_SQL).map_err(sort)?,
            main: c.prepare(MAIN_SQL).map_err(sort)?,
            mac,
            setup,
            types: all,
            mac_types: vec![OID_INT8, types[50], types[52], types[53], types[54]],
            copy_bin: format!("COPY {full} FROM STDIN (FORMAT binary)"),
            copy_txt: format!("COPY {full} FROM STDIN"),
            mac_bin: format!("COPY {macin} FROM STDIN (FORMAT binary)"),
            mac_txt: format!("COPY {macin} FROM STDIN"),
        })
    }
}

/// Whether the function would look up a `mac` row for this `raw_type`
/// (1, as the integer argument reads it; the server decides other texts).
fn wants_mac(v: &Val<'_>) -> bool {
    match number(v) {
        Some(x) => x == 1,
        None => !matches!(v, Val::Null),
    }
}

/// COPYs `rows` (`types.len()` values each) in binary, or as text where a
/// value has no binary form, inside the transaction open on `c`.
fn copy_in(
    c: &mut Client,
    (bin, txt): (&str, &str),
    rows: &[Val<'_>],
    types: &[u32],
    utf8: bool,
    buf: &mut Vec<u8>,
) -> Result<(), DbError> {
    if copy_binary(c, bin, rows, types, utf8, buf)? {
        return Ok(());
    }
    // An unfinished binary COPY aborted the transaction: start it again.
    c.batch_execute("ROLLBACK; BEGIN").map_err(sort)?;
    copy_text(c, txt, rows, types.len(), utf8, buf).map(|_| ())
}

/// Stages and writes one part (`ids` and `macs` are its rows'), leaving
/// its transaction open; returns the transaction's id.
#[allow(clippy::too_many_arguments)]
fn part(
    c: &mut Client,
    main: &Statement,
    buf: &mut Vec<u8>,
    plan: &Plan,
    rows: &[Val<'_>],
    ids: &[i64],
    macs: &[Option<i64>],
    utf8: bool,
) -> Result<i64, DbError> {
    let n = plan.types.len() - 2;
    let mut flat = Vec::with_capacity(ids.len() * (n + 2));
    for ((row, &id), mac) in rows.chunks(n).zip(ids).zip(macs) {
        flat.push(Val::Int(id));
        flat.push(mac.map_or(Val::Null, Val::Int));
        flat.extend_from_slice(row);
    }
    c.batch_execute("BEGIN").map_err(sort)?;
    copy_in(
        c,
        (&plan.copy_bin, &plan.copy_txt),
        &flat,
        &plan.types,
        utf8,
        buf,
    )?;
    c.execute(main, &[]).map_err(sort)?;
    let xid: i64 = c
        .query_one("SELECT txid_current()", &[])
        .map_err(sort)?
        .get(0);
    Ok(xid)
}

/// Ends the transaction open on `c`; a failure leaves the connection to
/// the writer's reconnect.
fn rollback(c: &mut Client) {
    let _ = c.batch_execute("ROLLBACK");
}

/// Where `nrows` rows are cut into `k` parts: part `j` is
/// `cuts[j]..cuts[j + 1]`.
fn cuts(nrows: usize, k: usize) -> Vec<usize> {
    (0..=k).map(|j| nrows * j / k).collect()
}

impl Pg {
    /// Writes `rows` (59 values each) as ulogd2's INSERT_PACKET_FULL would,
    /// set-wise, spread over up to `connections` connections.
    pub(super) fn setwise_write(&mut self, plan: &Plan, rows: &[Val<'_>]) -> Result<(), DbError> {
        let n = plan.types.len() - 2;
        let nrows = rows.len() / n;
        if nrows == 0 {
            return Ok(());
        }
        let k = self.connections.min(nrows / MIN_PART).max(1);
        let count = i32::try_from(nrows).map_err(|_| DbError::Away("batch too large".into()))?;
        let ids: Vec<i64> = self
            .client()?
            .query_one(&plan.ids, &[&count])
            .map_err(sort)?
            .get(0);
        if ids.len() != nrows {
            return Err(DbError::Away(format!(
                "{} ids drawn for {nrows} rows",
                ids.len()
            )));
        }
        let macs = self.settle_macs(plan, rows, n, nrows)?;
        while self.lanes.len() < k - 1 {
            if self.lanes.is_empty() {
                log::info!(
                    "{}: set-wise batches spread over {} connections, committed in order",
                    self.desc,
                    self.connections
                );
            }
            let (mut c, _) = self.session()?;
            c.batch_execute(&plan.setup).map_err(sort)?;
            let main = c.prepare(MAIN_SQL).map_err(sort)?;
            self.lanes.push(Lane {
                client: c,
                main,
                buf: Vec::new(),
            });
        }
        let cut = cuts(nrows, k);
        let utf8 = self.utf8;
        let mut buf = std::mem::take(&mut self.buf);
        let first = self
            .client
            .as_mut()
            .ok_or_else(|| DbError::Away("not connected".into()))?;
        let lanes = &mut self.lanes[..k - 1];
        let (ids, macs) = (&ids, &macs);
        let results: Vec<Result<i64, DbError>> = std::thread::scope(|s| {
            let others: Vec<_> = lanes
                .iter_mut()
                .enumerate()
                .map(|(j, lane)| {
                    let (a, b) = (cut[j + 1], cut[j + 2]);
                    s.spawn(move || {
                        let Lane { client, main, buf } = lane;
                        let part_rows = &rows[a * n..b * n];
                        part(
                            client,
                            main,
                            buf,
                            plan,
                            part_rows,
                            &ids[a..b],
                            &macs[a..b],
                            utf8,
                        )
                    })
                })
                .collect();
            let (a, b) = (cut[0], cut[1]);
            let mut out = vec![part(
                first,
                &plan.main,
                &mut buf,
                plan,
                &rows[a * n..b * n],
                &ids[a..b],
                &macs[a..b],
                utf8,
            )];
            out.extend(others.into_iter().map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(DbError::Away("a connection's thread panicked".into())))
            }));
            out
        });
        self.buf = buf;
        self.commit_in_order(rows, n, &cut, results)
    }

    /// The client of part `j`: the first connection, then the lanes.
    fn lane_client(&mut self, j: usize) -> Option<&mut Client> {
        match j {
            0 => self.client.as_mut(),
            _ => self.lanes.get_mut(j - 1).map(|l| &mut l.client),
        }
    }

    /// Commits the parts' transactions in row order once all of them wrote;
    /// on a failure rolls back the rest and notes what is in for the retry.
    fn commit_in_order(
        &mut self,
        rows: &[Val<'_>],
        n: usize,
        cut: &[usize],
        results: Vec<Result<i64, DbError>>,
    ) -> Result<(), DbError> {
        let k = results.len();
        if results.iter().any(Result::is_err) {
            for j in 0..k {
                if let Some(c) = self.lane_client(j) {
                    rollback(c);
                }
            }
            let mut errs = results.into_iter().filter_map(Result::err);
            let first = errs.next().expect("one failed");
            // The connection's trouble decides: the rows are not at fault.
            return Err(match first {
                DbError::Data(_) => errs
                    .find(|e| matches!(e, DbError::Away(_)))
                    .unwrap_or(first),
                away => away,
            });
        }
        for (j, xid) in results.into_iter().enumerate() {
            let xid = xid.expect("checked above");
            let done = match self.lane_client(j) {
                Some(c) => c.batch_execute("COMMIT").map_err(sort),
                None => Err(DbError::Away("not connected".into())),
            };
            let Err(e) = done else { continue };
            for later in j + 1..k {
                if let Some(c) = self.lane_client(later) {
                    rollback(c);
                }
            }
            let sure = cut[j] * n;
            return match e {
                DbError::Away(t) => {
                    self.unknown = Some(Unknown::after(rows, n, sure, xid, cut[j + 1] * n));
                    Err(DbError::Away(t))
                }
                // Refused at commit (a deferred constraint): rows of this
                // part are at fault, but the parts before it are in, so the
                // retry must skip them rather than go row by row over all.
                DbError::Data(t) if sure > 0 => {
                    self.unknown = Some(Unknown::committed(rows, n, sure));
                    Err(DbError::Away(t))
                }
                data => Err(data),
            };
        }
        Ok(())
    }

    /// Looks up or makes the `mac` rows the batch needs, in a transaction
    /// of its own committed before the parts (they refer to the rows);
    /// returns each row's `mac_id`.
    fn settle_macs(
        &mut self,
        plan: &Plan,
        rows: &[Val<'_>],
        n: usize,
        nrows: usize,
    ) -> Result<Vec<Option<i64>>, DbError> {
        let mut macs = vec![None; nrows];
        let mut args = Vec::new();
        for (i, row) in rows.chunks(n).enumerate() {
            if wants_mac(&row[50]) {
                args.extend_from_slice(&[Val::Int(i as i64), row[50], row[52], row[53], row[54]]);
            }
        }
        if args.is_empty() {
            return Ok(macs);
        }
        let utf8 = self.utf8;
        let mut buf = std::mem::take(&mut self.buf);
        let c = self
            .client
            .as_mut()
            .ok_or_else(|| DbError::Away("not connected".into()))?;
        let res = (|| {
            c.batch_execute("BEGIN").map_err(sort)?;
            let io = (plan.mac_bin.as_str(), plan.mac_txt.as_str());
            copy_in(c, io, &args, &plan.mac_types, utf8, &mut buf)?;
            if c.execute(&plan.mac[0], &[]).map_err(sort)? > 0 {
                for q in &plan.mac[1..5] {
                    c.execute(q, &[]).map_err(sort)?;
                }
            }
            let got = c.query(&plan.mac[5], &[]).map_err(sort)?;
            c.batch_execute("COMMIT").map_err(sort)?;
            Ok(got)
        })();
        self.buf = buf;
        let got = res.inspect_err(|_| {
            if let Some(c) = self.client.as_mut() {
                rollback(c);
            }
        })?;
        for r in got {
            let (seq, id): (i64, i64) = (r.get(0), r.get(1));
            if let Some(m) = usize::try_from(seq).ok().and_then(|i| macs.get_mut(i)) {
                *m = Some(id);
            }
        }
        Ok(macs)
    }
}

#[cfg(test)]
mod tests {
    use super::{cuts, wants_mac};
    use crate::sql::row::Val;

    #[test]
    fn parts_cover_the_batch_in_order_without_gaps() {
        assert_eq!(cuts(10, 1), vec![0, 10]);
        assert_eq!(cuts(10, 2), vec![0, 5, 10]);
        assert_eq!(cuts(7, 3), vec![0, 2, 4, 7]);
    }

    #[test]
    fn only_raw_type_one_looks_up_a_mac_row() {
        assert!(wants_mac(&Val::UInt(1)));
        assert!(wants_mac(&Val::Int(1)));
        assert!(!wants_mac(&Val::UInt(772)));
        assert!(!wants_mac(&Val::Null));
        // A text is the server's to read: staged, and filtered there.
        assert!(wants_mac(&Val::Text(b"1")));
    }
}
