//! rulogd built-in input plugins, one file each, named after the ulogd plugin.

use rulogd_plugin::Registration;

/// Every built-in input plugin.
pub fn registrations() -> Vec<Registration> {
    vec![]
}
