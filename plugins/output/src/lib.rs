//! rulogd built-in output plugins, one file each, named after the ulogd plugin.
//!
//! [`delivery`] is the writer-thread machinery the outputs that do I/O share.

use rulogd_plugin::Registration;

pub mod delivery;
pub mod json;

/// Every built-in output plugin.
pub fn registrations() -> Vec<Registration> {
    vec![json::REGISTRATION]
}
