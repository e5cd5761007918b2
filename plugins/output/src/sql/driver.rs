//! The database behind the shared transport, and its failures.

use super::row::Val;

/// A database failure, sorted by what the writer does about it.
#[derive(Debug)]
pub enum DbError {
    /// The database is away or refused (connection, permissions, a table
    /// that is missing for now): keep the rows and retry later.
    Away(String),
    /// These rows cannot go in (a value out of range, a constraint): the
    /// writer retries row by row and sets the bad ones aside.
    Data(String),
}

impl DbError {
    /// The message.
    pub fn text(&self) -> &str {
        match self {
            DbError::Away(s) | DbError::Data(s) => s,
        }
    }
}

/// A database behind the shared transport.
pub trait Driver: Send {
    /// For messages: `pgsql dbname=ulog table=ulog2`.
    fn describe(&self) -> &str;
    /// Connects.
    fn connect(&mut self) -> Result<(), DbError>;
    /// Whether connected.
    fn is_open(&self) -> bool;
    /// Drops the connection.
    fn close(&mut self);
    /// The columns of `table` in order, the ones to skip already removed
    /// (ulogd's INACTIVE id column). `Away` when the table is missing.
    fn columns(&mut self, table: &str) -> Result<Vec<String>, DbError>;
    /// Creates `table` with the layout of `template` unless it exists.
    fn create_like(&mut self, table: &str, template: &str) -> Result<(), DbError>;
    /// Writes `rows` (row-major, `cols.len()` values each) into `table`,
    /// all or nothing.
    fn write(&mut self, table: &str, cols: &[String], rows: &[Val<'_>]) -> Result<(), DbError>;
}
