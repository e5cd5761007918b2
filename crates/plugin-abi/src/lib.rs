//! The `repr(C)` mirror of `include/rulogd_plugin.h`, shared by the daemon's
//! loader and the Rust SDK. No dependencies: it is only the layout.
//!
//! The header is the reference; every item here has the same name without
//! the `rulogd_` prefix, and the layout test below pins the sizes a C
//! compiler gives them on this target.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};

/// The ABI version this daemon and SDK speak.
pub const ABI_VERSION: u32 = 1;
/// The symbol the daemon looks up, NUL-terminated.
pub const SYMBOL: &[u8] = b"rulogd_plugin_descriptor\0";

/// Input plugin kind (refused in ABI 1).
pub const KIND_INPUT: u32 = 0;
/// Filter plugin kind.
pub const KIND_FILTER: u32 = 1;
/// Output plugin kind.
pub const KIND_OUTPUT: u32 = 2;

/// No declared type.
pub const TYPE_NONE: u16 = 0x0000;
/// Signed 8-bit.
pub const TYPE_INT8: u16 = 0x0001;
/// Signed 16-bit.
pub const TYPE_INT16: u16 = 0x0002;
/// Signed 32-bit.
pub const TYPE_INT32: u16 = 0x0003;
/// Signed 64-bit.
pub const TYPE_INT64: u16 = 0x0004;
/// Unsigned 8-bit.
pub const TYPE_UINT8: u16 = 0x0011;
/// Unsigned 16-bit.
pub const TYPE_UINT16: u16 = 0x0012;
/// Unsigned 32-bit.
pub const TYPE_UINT32: u16 = 0x0013;
/// Unsigned 64-bit.
pub const TYPE_UINT64: u16 = 0x0014;
/// Boolean.
pub const TYPE_BOOL: u16 = 0x0050;
/// IPv4 or IPv6 address.
pub const TYPE_IPADDR: u16 = 0x0100;
/// String.
pub const TYPE_STRING: u16 = 0x8020;
/// Raw bytes.
pub const TYPE_RAW: u16 = 0x8030;
/// A string spliced into SQL unquoted.
pub const TYPE_RAWSTR: u16 = 0x8040;

/// Input key flag: optional.
pub const KEYF_OPTIONAL: u16 = 0x0100;
/// Input key flag: inactive.
pub const KEYF_INACTIVE: u16 = 0x0200;

/// Integer option.
pub const OPT_INT: u32 = 0;
/// String option.
pub const OPT_STRING: u32 = 1;
/// Option flag: mandatory.
pub const OPTF_MANDATORY: u32 = 1;

/// Log level: debug.
pub const LOG_DEBUG: c_int = 1;
/// Log level: info.
pub const LOG_INFO: c_int = 3;
/// Log level: notice.
pub const LOG_NOTICE: c_int = 5;
/// Log level: error.
pub const LOG_ERROR: c_int = 7;

/// `process`: pass the record on.
pub const CONTINUE: c_int = 0;
/// `process`: stop the record for this stack.
pub const DROP: c_int = 1;

/// `struct rulogd_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct key {
    /// Key name.
    pub name: *const c_char,
    /// `TYPE_*`.
    pub ty: u16,
    /// `KEYF_*`.
    pub flags: u16,
    /// 0.
    pub reserved: u32,
    /// JSON name or NULL.
    pub cim_name: *const c_char,
}

/// `struct rulogd_option`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct option {
    /// Option name.
    pub name: *const c_char,
    /// `OPT_*`.
    pub ty: u32,
    /// `OPTF_*`.
    pub flags: u32,
    /// Default as text.
    pub default_value: *const c_char,
    /// Help line or NULL.
    pub help: *const c_char,
    /// Lower bound (integers).
    pub min: i64,
    /// Upper bound (integers).
    pub max: i64,
}

/// `struct rulogd_optval`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct optval {
    /// Integer value.
    pub i: i64,
    /// String value, NUL-terminated.
    pub s: *const c_char,
    /// Its length.
    pub len: usize,
}

/// `struct rulogd_config`.
#[repr(C)]
#[derive(Debug)]
pub struct config {
    /// Instance id, NUL-terminated.
    pub instance: *const c_char,
    /// Number of options.
    pub n_options: u32,
    /// 0.
    pub reserved: u32,
    /// The values in option-table order.
    pub options: *const optval,
}

/// The payload of a `struct rulogd_value`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union value_u {
    /// Signed integers.
    pub i: i64,
    /// Unsigned integers and booleans.
    pub u: u64,
    /// An address, network order.
    pub addr: [u8; 16],
    /// String or raw bytes.
    pub ptr: *const u8,
}

/// `struct rulogd_value`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct value {
    /// `TYPE_*`.
    pub ty: u16,
    /// 0.
    pub reserved: u16,
    /// Bytes at `ptr`, or 4/16 for an address.
    pub len: u32,
    /// The payload.
    pub v: value_u,
}

impl value {
    /// An empty value of type NONE.
    pub const fn none() -> Self {
        value {
            ty: TYPE_NONE,
            reserved: 0,
            len: 0,
            v: value_u { u: 0 },
        }
    }
}

/// `struct rulogd_record` (opaque).
#[repr(C)]
pub struct record {
    _private: [u8; 0],
}

/// `struct rulogd_out` (opaque).
#[repr(C)]
pub struct out {
    _private: [u8; 0],
}

/// `struct rulogd_host`.
#[repr(C)]
pub struct host {
    /// The daemon's ABI version.
    pub abi_version: u32,
    /// `size_of::<host>()` in the daemon.
    pub size: u32,
    /// Reads input key `key`.
    pub get: unsafe extern "C" fn(*const record, u32, *mut value) -> c_int,
    /// Whether input key `key` is valid.
    pub is_valid: unsafe extern "C" fn(*const record, u32) -> c_int,
    /// Sets output key `key`.
    pub set: unsafe extern "C" fn(*mut record, u32, *const value) -> c_int,
    /// The receive buffer.
    pub packet: unsafe extern "C" fn(*const record, *mut *const u8, *mut usize) -> c_int,
    /// Appends to the batch being formatted.
    pub append: unsafe extern "C" fn(*mut out, *const c_void, usize),
    /// Logs a line.
    pub log: unsafe extern "C" fn(*const record, c_int, *const c_char),
}

/// `configure`.
pub type configure_fn =
    unsafe extern "C" fn(*const host, *const config, *mut c_char, usize) -> *mut c_void;

/// `struct rulogd_plugin`.
#[repr(C)]
pub struct plugin {
    /// `ABI_VERSION`; always first.
    pub abi_version: u32,
    /// `size_of::<plugin>()` of the plugin's build.
    pub size: u32,
    /// `KIND_*`.
    pub kind: u32,
    /// 0.
    pub flags: u32,
    /// Plugin name.
    pub name: *const c_char,
    /// One line.
    pub summary: *const c_char,
    /// Input keys.
    pub input_keys: *const key,
    /// Their number.
    pub n_input_keys: u32,
    /// Number of output keys.
    pub n_output_keys: u32,
    /// Output keys.
    pub output_keys: *const key,
    /// Options.
    pub options: *const option,
    /// Their number.
    pub n_options: u32,
    /// 0.
    pub reserved: u32,
    /// Makes an instance.
    pub configure: Option<configure_fn>,
    /// After binding.
    pub start: Option<unsafe extern "C" fn(*mut c_void, *mut c_char, usize) -> c_int>,
    /// Frees an instance.
    pub destroy: Option<unsafe extern "C" fn(*mut c_void)>,
    /// Timer.
    pub tick: Option<unsafe extern "C" fn(*mut c_void)>,
    /// Signal.
    pub signal: Option<unsafe extern "C" fn(*mut c_void, c_int)>,
    /// Filter: one record.
    pub process: Option<unsafe extern "C" fn(*mut c_void, *mut record) -> c_int>,
    /// Output: render one record.
    pub format: Option<unsafe extern "C" fn(*mut c_void, *const record, *mut out) -> c_int>,
    /// Output: the writer's state.
    pub writer_open: Option<configure_fn>,
    /// Output: write a batch.
    pub writer_write: Option<unsafe extern "C" fn(*mut c_void, *const u8, usize, usize) -> c_int>,
    /// Output: SIGHUP.
    pub writer_reopen: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    /// Output: exit.
    pub writer_close: Option<unsafe extern "C" fn(*mut c_void)>,
}

/// `rulogd_plugin_descriptor`.
pub type descriptor_fn = unsafe extern "C" fn() -> *const plugin;

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layout_matches_the_header_on_lp64() {
        // What gcc gives the header's structs on x86_64 and aarch64.
        assert_eq!(size_of::<key>(), 24);
        assert_eq!(size_of::<option>(), 48);
        assert_eq!(size_of::<value>(), 24);
        assert_eq!(offset_of!(value, v), 8);
        assert_eq!(size_of::<host>(), 56);
        assert_eq!(offset_of!(plugin, input_keys), 32);
        assert_eq!(offset_of!(plugin, configure), 72);
        assert_eq!(size_of::<plugin>(), 72 + 11 * 8);
    }
}
