//! The SQL outputs: one file per plugin over a shared layer and the shared
//! delivery (memory queue, durable spool, reconnects). The layer's modules
//! import downwards only: `output` (the Output every SQL plugin builds) uses
//! `transport` (rows to database writes on the writer thread), which uses
//! `driver` (the database) and `config`; `row` is the rendered row.

pub mod config;
pub mod driver;
#[cfg(feature = "mysql")]
pub mod mysql;
pub mod output;
#[cfg(feature = "pgsql")]
pub mod pgsql;
pub mod row;
#[cfg(feature = "sqlite3")]
pub mod sqlite3;
pub mod transport;
