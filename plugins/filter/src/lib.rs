//! rulogd built-in filter plugins, one file each, named after the ulogd plugin.

mod addr;
pub mod base;
pub mod direction;
pub mod flow;
pub mod hwhdr;
pub mod ifindex;
pub mod ip2bin;
pub mod ip2hbin;
pub mod ip2str;
pub mod mark;
pub mod printflow;
pub mod printpkt;
pub mod pwsniff;
#[cfg(test)]
mod testutil;

use rulogd_plugin::Registration;

/// Every built-in filter plugin.
pub fn registrations() -> Vec<Registration> {
    vec![
        base::REGISTRATION,
        ifindex::REGISTRATION,
        ip2str::REGISTRATION,
        ip2bin::REGISTRATION,
        ip2hbin::REGISTRATION,
        hwhdr::REGISTRATION,
        mark::REGISTRATION,
        pwsniff::REGISTRATION,
        printpkt::REGISTRATION,
        printflow::REGISTRATION,
        flow::REGISTRATION,
        direction::REGISTRATION,
    ]
}
