//! rulogd built-in filter plugins, one file each, named after the ulogd plugin.

use rulogd_plugin::Registration;

/// Every built-in filter plugin.
pub fn registrations() -> Vec<Registration> {
    vec![]
}
