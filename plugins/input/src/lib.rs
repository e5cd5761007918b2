//! rulogd built-in input plugins, one file each, named after the ulogd plugin.

pub mod capture;
mod common;
pub mod nfacct;
pub mod nfct;
pub mod nflog;
pub mod nfqueue;
mod packet;
#[cfg(test)]
mod testutil;
pub mod unixsock;

use rulogd_plugin::Registration;

/// Every built-in input plugin.
pub fn registrations() -> Vec<Registration> {
    vec![
        nflog::REGISTRATION,
        nfct::REGISTRATION,
        nfacct::REGISTRATION,
        nfqueue::REGISTRATION,
        unixsock::REGISTRATION,
        capture::REGISTRATION,
    ]
}
