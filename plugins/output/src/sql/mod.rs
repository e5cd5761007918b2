//! The SQL outputs: one file per plugin over a shared layer ([`common`])
//! and the shared delivery (memory queue, durable spool, reconnects).

pub mod common;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "pgsql")]
pub mod pgsql;
pub mod row;
#[cfg(feature = "sqlite3")]
pub mod sqlite3;
pub mod transport;
