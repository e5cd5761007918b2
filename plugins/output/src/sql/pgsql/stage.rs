//! PGSQL's procedure mode at batch speed. Calling ulogd2's
//! `INSERT_PACKET_FULL` (or any function or procedure) once per row costs a
//! round trip and a statement per row; here a batch is COPYed into a
//! temporary staging table shaped from the function's argument list and
//! the function is applied to all its rows in one statement, in the
//! batch's one transaction (so the COPY path's exactly-once rules hold).
//!
//! The semantics are those of one call per row, in row order: the staging
//! columns have the arguments' exact types, so each value goes through the
//! same input function a bound text parameter would; `ORDER BY seq` keeps
//! the calls in the order of the rows (PostgreSQL evaluates a volatile
//! function of the select list after the sort), and a volatile function
//! sees what the calls before it wrote, as separate statements would.
//! Anything this cannot promise (an overloaded or variadic name, OUT
//! arguments, pseudo-type arguments, a name that is not a plain identifier,
//! no PL/pgSQL for `CALL`) keeps the one-call-per-row path.

use super::copy::{copy_binary, copy_text};
use super::{sort, Pg};
use crate::sql::driver::DbError;
use crate::sql::row::Val;
use postgres::{Client, Statement, Transaction};

/// The temporary table, one per connection (temporary tables are).
const STAGE: &str = "pg_temp.rulogd_stage";

/// How this connection writes through the procedure.
pub(super) enum Mode {
    /// COPY into the staging table, then one statement for the batch.
    Staged(Staged),
    /// ulogd2's own INSERT_PACKET_FULL, done set-wise (`setwise.rs`).
    SetWise(Box<super::setwise::Plan>),
    /// One call per row (the reason was logged once).
    PerRow,
}

/// A staging table made on this connection, and what applies it.
pub(super) struct Staged {
    /// Argument type OIDs: the binary COPY's column types.
    types: Vec<u32>,
    /// `COPY … (a1, …) FROM STDIN`, binary and text.
    copy_bin: String,
    copy_txt: String,
    apply: Apply,
}

enum Apply {
    /// `SELECT f(s.a1, …) FROM stage s ORDER BY s.seq`, prepared.
    Select(Statement),
    /// A `DO` block looping over the stage with `CALL p(…)` (a CALL cannot
    /// take a set, and a DO block cannot be prepared).
    Script(String),
}

/// One routine `pg_proc` finds under the configured name.
struct Found {
    kind: String,
    type_names: Vec<String>,
    types: Vec<u32>,
    plain_in: bool,
    variadic: bool,
    pseudo: bool,
}

/// Splits `name` into schema and routine as the server folds an unquoted
/// identifier; None when it is not a plain (optionally qualified) one.
fn plain_name(name: &str) -> Option<(Option<String>, String)> {
    let ok = |s: &str| {
        !s.is_empty()
            && !s.as_bytes()[0].is_ascii_digit()
            && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
    };
    let parts: Vec<&str> = name.trim().split('.').collect();
    match parts.as_slice() {
        [f] if ok(f) => Some((None, f.to_ascii_lowercase())),
        [s, f] if ok(s) && ok(f) => Some((Some(s.to_ascii_lowercase()), f.to_ascii_lowercase())),
        _ => None,
    }
}

fn lookup(c: &mut Client, name: &str, nargs: usize) -> Result<Result<Found, String>, DbError> {
    let Some((schema, proname)) = plain_name(name) else {
        return Ok(Err(format!("`{name}` is not a plain routine name")));
    };
    let rows = c
        .query(
            "SELECT p.prokind::text, \
               ARRAY(SELECT format_type(a.t, NULL) FROM unnest(p.proargtypes::oid[]) \
                     WITH ORDINALITY a(t, i) ORDER BY a.i), \
               ARRAY(SELECT a.t::int8 FROM unnest(p.proargtypes::oid[]) \
                     WITH ORDINALITY a(t, i) ORDER BY a.i), \
               coalesce(p.proargmodes::text[] <@ ARRAY['i'], true), \
               p.provariadic <> 0, \
               EXISTS (SELECT 1 FROM unnest(p.proargtypes::oid[]) a(t) \
                       JOIN pg_type y ON y.oid = a.t WHERE y.typtype = 'p') \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE p.proname = $1 \
               AND (($2::text IS NULL AND pg_function_is_visible(p.oid)) OR n.nspname = $2)",
            &[&proname, &schema],
        )
        .map_err(sort)?;
    if rows.len() != 1 {
        return Ok(Err(format!("{} routines are named `{name}`", rows.len())));
    }
    let r = &rows[0];
    let types: Vec<i64> = r.get(2);
    let f = Found {
        kind: r.get(0),
        type_names: r.get(1),
        types: types.into_iter().map(|t| t as u32).collect(),
        plain_in: r.get(3),
        variadic: r.get(4),
        pseudo: r.get(5),
    };
    if f.types.len() != nargs {
        return Ok(Err(format!(
            "`{name}` takes {} arguments, the table has {nargs} columns",
            f.types.len()
        )));
    }
    if !f.plain_in || f.variadic || f.pseudo {
        return Ok(Err(format!(
            "`{name}` has OUT, variadic or polymorphic arguments"
        )));
    }
    Ok(Ok(f))
}

impl Pg {
    /// The mode of this connection, found (and its staging table made) on
    /// the first write after a connect.
    fn mode(&mut self, call: bool, name: &str, nargs: usize) -> Result<&Mode, DbError> {
        if self.stage.is_none() {
            let m = self.make_stage(call, name, nargs)?;
            self.stage = Some(m);
        }
        Ok(self.stage.as_ref().expect("set above"))
    }

    fn make_stage(&mut self, call: bool, name: &str, nargs: usize) -> Result<Mode, DbError> {
        let desc = self.desc.clone();
        let c = self.client()?;
        let found = match lookup(c, name, nargs)? {
            Ok(f) if call && f.kind != "p" => Err(format!("`{name}` is not a procedure")),
            Ok(f) if !call && f.kind != "f" => Err(format!("`{name}` is not a plain function")),
            Ok(_) if call && !has_plpgsql(c)? => Err("PL/pgSQL is not installed".into()),
            other => other,
        };
        let f = match found {
            Ok(f) => f,
            Err(why) => {
                log::info!("{desc}: {why}: calling it once per row");
                return Ok(Mode::PerRow);
            }
        };
        let cols: Vec<String> = f
            .type_names
            .iter()
            .enumerate()
            .map(|(i, t)| format!("a{} {t}", i + 1))
            .collect();
        c.batch_execute(&format!(
            "DROP TABLE IF EXISTS {STAGE}; \
             CREATE TEMPORARY TABLE rulogd_stage \
             (seq bigint GENERATED ALWAYS AS IDENTITY, {}) ON COMMIT DELETE ROWS",
            cols.join(", ")
        ))
        .map_err(sort)?;
        let list: Vec<String> = (1..=nargs).map(|i| format!("a{i}")).collect();
        let args: Vec<String> = list.iter().map(|a| format!("s.{a}")).collect();
        let apply = if call {
            let args: Vec<String> = list.iter().map(|a| format!("r.{a}")).collect();
            Apply::Script(format!(
                "DO $rulogd$ DECLARE r record; BEGIN \
                 FOR r IN SELECT * FROM {STAGE} ORDER BY seq LOOP \
                 CALL {name}({}); END LOOP; END $rulogd$",
                args.join(", ")
            ))
        } else if super::setwise::known(c, name, nargs)? {
            let plan = super::setwise::Plan::new(c, &f.type_names, &f.types)?;
            log::info!(
                "{desc}: `{name}` is ulogd2's: its rows go in set-wise, a statement per table"
            );
            return Ok(Mode::SetWise(Box::new(plan)));
        } else {
            let sql = format!(
                "SELECT {name}({}) FROM {STAGE} s ORDER BY s.seq",
                args.join(", ")
            );
            Apply::Select(c.prepare(&sql).map_err(sort)?)
        };
        log::info!(
            "{desc}: `{name}` applied to each batch from a staging table ({nargs} arguments)"
        );
        Ok(Mode::Staged(Staged {
            types: f.types,
            copy_bin: format!(
                "COPY {STAGE} ({}) FROM STDIN (FORMAT binary)",
                list.join(",")
            ),
            copy_txt: format!("COPY {STAGE} ({}) FROM STDIN", list.join(",")),
            apply,
        }))
    }

    /// Writes `rows` through `SELECT name(…)` (or `CALL name(…)`), staged
    /// when the routine allows it, else one call per row.
    pub(super) fn call_batch(
        &mut self,
        call: bool,
        name: &str,
        cols: &[String],
        rows: &[Val<'_>],
    ) -> Result<(), DbError> {
        let n = cols.len().max(1);
        if matches!(self.mode(call, name, n)?, Mode::PerRow) {
            let verb = if call { "CALL" } else { "SELECT" };
            return self.call_each(verb, name, cols, rows);
        }
        let st = match self.stage.take() {
            Some(Mode::Staged(st)) => st,
            Some(Mode::SetWise(plan)) => {
                let res = self.setwise_write(&plan, rows);
                // A connection lost in the batch took its temporary tables.
                if self.is_connected() {
                    self.stage = Some(Mode::SetWise(plan));
                }
                return res;
            }
            _ => unreachable!("mode() set a staged mode"),
        };
        let utf8 = self.utf8;
        let mut buf = std::mem::take(&mut self.buf);
        let res = (|| {
            let apply = |tx: &mut Transaction<'_>| -> Result<(), DbError> {
                match &st.apply {
                    Apply::Select(s) => tx.execute(s, &[]).map(|_| ()),
                    Apply::Script(sql) => tx.batch_execute(sql),
                }
                .map_err(sort)
            };
            let binary = |tx: &mut Transaction<'_>| {
                if !copy_binary(tx, &st.copy_bin, rows, &st.types, utf8, &mut buf)? {
                    return Ok(false);
                }
                apply(tx).map(|()| true)
            };
            if self.in_tx(rows, n, binary)? {
                return Ok(());
            }
            let text = |tx: &mut Transaction<'_>| {
                copy_text(tx, &st.copy_txt, rows, n, utf8, &mut buf)?;
                apply(tx).map(|()| true)
            };
            self.in_tx(rows, n, text).map(|_| ())
        })();
        self.buf = buf;
        // A connection lost in the batch took its temporary table with it.
        if self.is_connected() {
            self.stage = Some(Mode::Staged(st));
        }
        res
    }

    fn is_connected(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }
}

fn has_plpgsql(c: &mut Client) -> Result<bool, DbError> {
    Ok(
        c.query_opt("SELECT 1 FROM pg_language WHERE lanname = 'plpgsql'", &[])
            .map_err(sort)?
            .is_some(),
    )
}

#[cfg(test)]
mod tests {
    use super::plain_name;

    #[test]
    fn plain_names_fold_to_lower_case_and_others_are_refused() {
        assert_eq!(
            plain_name("INSERT_PACKET_FULL"),
            Some((None, "insert_packet_full".into()))
        );
        assert_eq!(
            plain_name("Ulog.Insert_Ct"),
            Some((Some("ulog".into()), "insert_ct".into()))
        );
        assert_eq!(plain_name("\"Mixed\""), None);
        assert_eq!(plain_name("f(1)"), None);
        assert_eq!(plain_name("a.b.c"), None);
        assert_eq!(plain_name("1f"), None);
    }
}
