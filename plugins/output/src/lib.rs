//! rulogd built-in output plugins, one file each, named after the ulogd plugin.
//!
//! [`delivery`] is the writer-thread machinery the outputs that do I/O share.

use rulogd_plugin::Registration;

pub mod clickhouse;
pub mod gprint;
pub mod graphite;
pub mod ipfix;
pub mod json;
pub mod logemu;
pub mod nacct;
pub mod oprint;
pub mod pcap;
mod rendered;
pub mod sql;
pub mod syslog;
#[cfg(test)]
mod testutil;
mod text;
pub mod web;
pub mod xml;

/// Every built-in output plugin.
pub fn registrations() -> Vec<Registration> {
    vec![
        json::REGISTRATION,
        logemu::REGISTRATION,
        syslog::REGISTRATION,
        oprint::REGISTRATION,
        gprint::REGISTRATION,
        xml::REGISTRATION,
        pcap::REGISTRATION,
        nacct::REGISTRATION,
        graphite::REGISTRATION,
        ipfix::REGISTRATION,
        web::REGISTRATION,
        clickhouse::REGISTRATION,
        #[cfg(feature = "pgsql")]
        sql::pgsql::REGISTRATION,
        #[cfg(feature = "sqlite3")]
        sql::sqlite3::REGISTRATION,
        #[cfg(feature = "mysql")]
        sql::mysql::REGISTRATION,
    ]
}
