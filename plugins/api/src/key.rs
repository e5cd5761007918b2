//! Key declarations: ulogd's key tables, as static data.

use std::borrow::Cow;

/// The type of a key's value, as ulogd names them in `--info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// Signed 8-bit.
    I8,
    /// Signed 16-bit.
    I16,
    /// Signed 32-bit.
    I32,
    /// Signed 64-bit.
    I64,
    /// Unsigned 8-bit.
    U8,
    /// Unsigned 16-bit.
    U16,
    /// Unsigned 32-bit.
    U32,
    /// Unsigned 64-bit.
    U64,
    /// Boolean.
    Bool,
    /// An IPv4 or IPv6 address (ulogd's IPADDR; the family says which).
    IpAddr,
    /// A string (bytes, not necessarily UTF-8).
    String,
    /// Opaque bytes.
    Raw,
    /// A string meant to be spliced into SQL unquoted (IP2BIN).
    RawStr,
    /// A key whose type the producer does not declare (PRINTPKT's inputs).
    None,
}

impl KeyType {
    /// Whether ulogd's outputs print a value of this type as a number: the
    /// integers and booleans.
    pub const fn is_integer(self) -> bool {
        match self {
            KeyType::I8
            | KeyType::I16
            | KeyType::I32
            | KeyType::I64
            | KeyType::U8
            | KeyType::U16
            | KeyType::U32
            | KeyType::U64
            | KeyType::Bool => true,
            KeyType::IpAddr | KeyType::String | KeyType::Raw | KeyType::RawStr | KeyType::None => {
                false
            }
        }
    }

    /// The label `ulogd --info` prints for this type.
    pub fn info_label(self) -> &'static str {
        match self {
            KeyType::I8 => "int 8",
            KeyType::I16 => "int 16",
            KeyType::I32 => "int 32",
            KeyType::I64 => "int 64",
            KeyType::U8 => "unsigned int 8",
            KeyType::U16 => "unsigned int 16",
            KeyType::U32 => "unsigned int 32",
            KeyType::U64 => "unsigned int 64",
            KeyType::Bool => "boolean",
            KeyType::IpAddr => "IP addr",
            KeyType::String => "string",
            KeyType::Raw => "raw data",
            KeyType::RawStr | KeyType::None => "Unknown type",
        }
    }
}

/// Flags on a key declaration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyFlags(u16);

impl KeyFlags {
    /// No flags.
    pub const NONE: KeyFlags = KeyFlags(0);
    /// Input key: the stack builds even without a provider.
    pub const OPTIONAL: KeyFlags = KeyFlags(0x0100);
    /// Input key: ignored completely (an SQL auto-increment column).
    pub const INACTIVE: KeyFlags = KeyFlags(0x0200);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: KeyFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Union of two flag sets.
    pub const fn union(self, other: KeyFlags) -> KeyFlags {
        KeyFlags(self.0 | other.0)
    }
}

/// One key: a name, a type, flags and the optional CIM (JSON) name and IPFIX id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDef {
    /// ulogd's key name, e.g. `ip.saddr`.
    pub name: Cow<'static, str>,
    /// Value type.
    pub ty: KeyType,
    /// OPTIONAL / INACTIVE.
    pub flags: KeyFlags,
    /// Common Information Model name used by JSON in place of `name`.
    pub cim: Option<&'static str>,
    /// IPFIX (vendor, field id) where ulogd declares one.
    pub ipfix: Option<(u32, u16)>,
}

impl KeyDef {
    /// A key with no flags.
    pub const fn new(name: &'static str, ty: KeyType) -> Self {
        KeyDef {
            name: Cow::Borrowed(name),
            ty,
            flags: KeyFlags::NONE,
            cim: None,
            ipfix: None,
        }
    }

    /// A key whose name is only known at run time (SQL columns).
    pub fn dynamic(name: String, ty: KeyType) -> Self {
        KeyDef {
            name: Cow::Owned(name),
            ty,
            flags: KeyFlags::NONE,
            cim: None,
            ipfix: None,
        }
    }

    /// The same key marked optional.
    pub const fn optional(mut self) -> Self {
        self.flags = self.flags.union(KeyFlags::OPTIONAL);
        self
    }

    /// The same key marked inactive.
    pub const fn inactive(mut self) -> Self {
        self.flags = self.flags.union(KeyFlags::INACTIVE);
        self
    }

    /// The same key with a CIM name.
    pub const fn cim(mut self, cim: &'static str) -> Self {
        self.cim = Some(cim);
        self
    }

    /// The same key with an IPFIX element id.
    pub const fn ipfix(mut self, vendor: u32, field: u16) -> Self {
        self.ipfix = Some((vendor, field));
        self
    }

    /// Whether the key is optional.
    pub fn is_optional(&self) -> bool {
        self.flags.contains(KeyFlags::OPTIONAL)
    }

    /// Whether the key is inactive.
    pub fn is_inactive(&self) -> bool {
        self.flags.contains(KeyFlags::INACTIVE)
    }
}

/// An output key of some upstream plugin, as seen by a wildcard consumer
/// (JSON, GPRINT, OPRINT): every upstream key in stack order, each bound to the
/// nearest producer of its name.
#[derive(Clone, Debug)]
pub struct UpstreamKey {
    /// The key's declaration (name, type, CIM name).
    pub def: KeyDef,
    /// The slot of the nearest producer of this name.
    pub slot: crate::Slot,
    /// The instance id of the plugin that declared this copy of the key.
    pub producer: String,
}

/// Declares a plugin's key table once, with an index constant per key, so
/// the indices and the table cannot drift apart; the order of the list is
/// the order `--info` prints and slots are bound in.
///
/// ```
/// use rulogd_plugin::{key_table, KeyDef, KeyType};
/// key_table! {
///     /// The output keys.
///     pub static KEYS: [KeyDef; NKEYS];
///     K_A = KeyDef::new("a", KeyType::U8);
///     K_B = KeyDef::new("b", KeyType::U16);
/// }
/// assert_eq!((K_A, K_B, NKEYS), (0, 1, 2));
/// assert_eq!(KEYS[K_B].name, "b");
/// ```
#[macro_export]
macro_rules! key_table {
    (
        $(#[$m:meta])*
        $vis:vis static $table:ident: [KeyDef; $n:ident];
        $($id:ident = $def:expr;)*
    ) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms, dead_code)]
        #[repr(usize)]
        enum KeyIdx { $($id),* }
        $(
            #[doc = concat!("Index of `", stringify!($id), "` in the key table.")]
            #[allow(dead_code)]
            $vis const $id: usize = KeyIdx::$id as usize;
        )*
        /// Number of keys in the table.
        $vis const $n: usize = [$(stringify!($id)),*].len();
        $(#[$m])*
        $vis static $table: [$crate::KeyDef; $n] = [$($def),*];
    };
}
