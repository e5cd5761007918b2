//! rulogd built-in output plugins, one file each, named after the ulogd plugin.

use rulogd_plugin::Registration;

/// Every built-in output plugin.
pub fn registrations() -> Vec<Registration> {
    vec![]
}
