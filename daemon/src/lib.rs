//! rulogd core.
