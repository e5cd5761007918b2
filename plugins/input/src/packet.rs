//! What NFLOG and NFQUEUE share: NFQUEUE's records carry NFLOG's keys, and
//! most of them come from attributes the two kernel modules encode alike
//! (under different numbers), so one key list and one function fill them.

use rulogd_netlink::nflog::NflogPacket;
use rulogd_netlink::nfqueue::QueuePacket;
use rulogd_netlink::HwAddr;
use rulogd_plugin::{Record, Slot, Span, Value};

/// IPFIX vendor id of IETF elements.
pub(crate) const IETF: u32 = 0;
/// IPFIX vendor id of netfilter's elements.
pub(crate) const NETFILTER: u32 = 21373;

/// ulogd 2.0.8's NFLOG keys, in its order with its IPFIX ids, handed to
/// [`rulogd_plugin::key_table!`] with `$extra` keys after them: NFQUEUE
/// produces the same keys plus its own, so both tables and their index
/// constants come from this one list, and the shared keys have the same
/// index in both (those of [`SHARED_KEYS`]).
macro_rules! nflog_keys {
    (
        $(#[$m:meta])*
        $vis:vis static $table:ident: [KeyDef; $n:ident];
        $($id:ident = $def:expr;)*
    ) => {
        ::rulogd_plugin::key_table! {
            $(#[$m])*
            $vis static $table: [KeyDef; $n];
            K_RAW_MAC = ::rulogd_plugin::KeyDef::new("raw.mac", ::rulogd_plugin::KeyType::Raw);
            K_RAW_PKT = ::rulogd_plugin::KeyDef::new("raw.pkt", ::rulogd_plugin::KeyType::Raw).ipfix($crate::packet::NETFILTER, 1);
            K_RAW_PKTLEN = ::rulogd_plugin::KeyDef::new("raw.pktlen", ::rulogd_plugin::KeyType::U32).ipfix($crate::packet::NETFILTER, 2);
            K_RAW_PKTCOUNT = ::rulogd_plugin::KeyDef::new("raw.pktcount", ::rulogd_plugin::KeyType::U32).ipfix($crate::packet::IETF, 2);
            K_PREFIX = ::rulogd_plugin::KeyDef::new("oob.prefix", ::rulogd_plugin::KeyType::String).ipfix($crate::packet::NETFILTER, 3);
            K_TIME_SEC = ::rulogd_plugin::KeyDef::new("oob.time.sec", ::rulogd_plugin::KeyType::U32).ipfix($crate::packet::IETF, 150);
            K_TIME_USEC = ::rulogd_plugin::KeyDef::new("oob.time.usec", ::rulogd_plugin::KeyType::U32).ipfix($crate::packet::IETF, 154);
            K_MARK = ::rulogd_plugin::KeyDef::new("oob.mark", ::rulogd_plugin::KeyType::U32).ipfix($crate::packet::NETFILTER, 4);
            K_IFINDEX_IN = ::rulogd_plugin::KeyDef::new("oob.ifindex_in", ::rulogd_plugin::KeyType::U32).ipfix($crate::packet::IETF, 10);
            K_IFINDEX_OUT = ::rulogd_plugin::KeyDef::new("oob.ifindex_out", ::rulogd_plugin::KeyType::U32).ipfix($crate::packet::IETF, 14);
            K_HOOK = ::rulogd_plugin::KeyDef::new("oob.hook", ::rulogd_plugin::KeyType::U8).ipfix($crate::packet::NETFILTER, 5);
            K_RAW_MAC_LEN = ::rulogd_plugin::KeyDef::new("raw.mac_len", ::rulogd_plugin::KeyType::U16);
            K_SEQ_LOCAL = ::rulogd_plugin::KeyDef::new("oob.seq.local", ::rulogd_plugin::KeyType::U32).ipfix($crate::packet::NETFILTER, 7);
            K_SEQ_GLOBAL = ::rulogd_plugin::KeyDef::new("oob.seq.global", ::rulogd_plugin::KeyType::U32).ipfix($crate::packet::NETFILTER, 8);
            K_FAMILY = ::rulogd_plugin::KeyDef::new("oob.family", ::rulogd_plugin::KeyType::U8);
            K_PROTOCOL = ::rulogd_plugin::KeyDef::new("oob.protocol", ::rulogd_plugin::KeyType::U16);
            K_UID = ::rulogd_plugin::KeyDef::new("oob.uid", ::rulogd_plugin::KeyType::U32);
            K_GID = ::rulogd_plugin::KeyDef::new("oob.gid", ::rulogd_plugin::KeyType::U32);
            K_LABEL = ::rulogd_plugin::KeyDef::new("raw.label", ::rulogd_plugin::KeyType::U8);
            K_RAW_TYPE = ::rulogd_plugin::KeyDef::new("raw.type", ::rulogd_plugin::KeyType::U16);
            K_MAC_SADDR = ::rulogd_plugin::KeyDef::new("raw.mac.saddr", ::rulogd_plugin::KeyType::Raw).ipfix($crate::packet::IETF, 56);
            K_MAC_ADDRLEN = ::rulogd_plugin::KeyDef::new("raw.mac.addrlen", ::rulogd_plugin::KeyType::U16);
            K_RAW = ::rulogd_plugin::KeyDef::new("raw", ::rulogd_plugin::KeyType::Raw);
            K_CT = ::rulogd_plugin::KeyDef::new("ct", ::rulogd_plugin::KeyType::Raw);
            $($id = $def;)*
        }
    };
}
pub(crate) use nflog_keys;

nflog_keys! {
    /// The keys every table made by `nflog_keys!` starts with, at these
    /// indices: the ones [`fill_shared`] writes, and a few more it leaves
    /// to NFLOG.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) static SHARED_KEYS: [KeyDef; NSHARED];
}

/// The attributes NFLOG's and NFQUEUE's packet messages both carry.
pub(crate) trait PacketAttrs {
    /// `nfgen_family`.
    fn family(&self) -> u8;
    /// The hook and the link-layer protocol of the packet header, if any.
    fn hook_protocol(&self) -> Option<(u8, u16)>;
    /// The hardware source address.
    fn hwaddr(&self) -> Option<HwAddr>;
    /// The packet from its network header on.
    fn payload(&self) -> Option<Span>;
    /// The kernel's timestamp as (seconds, microseconds).
    fn timestamp(&self) -> Option<(u64, u64)>;
    /// The skb mark.
    fn mark(&self) -> Option<u32>;
    /// Input interface index.
    fn indev(&self) -> Option<u32>;
    /// Output interface index.
    fn outdev(&self) -> Option<u32>;
    /// Socket owner uid.
    fn uid(&self) -> Option<u32>;
    /// Socket owner gid.
    fn gid(&self) -> Option<u32>;
    /// The whole netlink message.
    fn msg(&self) -> Span;
    /// The nested conntrack attributes.
    fn ct(&self) -> Option<Span>;
}

/// Implements [`PacketAttrs`] for a packet type with fields of those names,
/// `$hdr` giving the hook and protocol of `$p`.
macro_rules! packet_attrs {
    ($t:ty, |$p:ident| $hdr:expr) => {
        impl PacketAttrs for $t {
            #[inline(always)]
            fn hook_protocol(&self) -> Option<(u8, u16)> {
                let $p = self;
                $hdr
            }
            packet_attrs!(@fields family: u8, hwaddr: Option<HwAddr>, payload: Option<Span>,
                timestamp: Option<(u64, u64)>, mark: Option<u32>, indev: Option<u32>,
                outdev: Option<u32>, uid: Option<u32>, gid: Option<u32>, msg: Span,
                ct: Option<Span>);
        }
    };
    (@fields $($f:ident: $ty:ty),*) => {
        $(
            #[inline(always)]
            fn $f(&self) -> $ty {
                self.$f
            }
        )*
    };
}

packet_attrs!(NflogPacket, |p| p.hdr.map(|h| (h.hook, h.hw_protocol)));
packet_attrs!(QueuePacket, |p| Some((p.hook, p.hw_protocol)));

/// Fills the keys both plugins derive alike from `p`, with ulogd's NFLOG
/// validity rules; `now` supplies the time when the kernel gave none (or
/// gave second 0). `slots` is a plugin's table made by `nflog_keys!`.
#[inline(always)]
pub(crate) fn fill_shared<const N: usize>(
    rec: &mut Record,
    slots: &[Option<Slot>; N],
    p: &impl PacketAttrs,
    label: u8,
    now: &mut impl FnMut() -> (u32, u32),
) {
    const { assert!(N >= NSHARED) };
    let s = slots;
    rec.set_opt(s[K_FAMILY], Value::U8(p.family()));
    rec.set_opt(s[K_LABEL], Value::U8(label));
    if let Some((hook, protocol)) = p.hook_protocol() {
        rec.set_opt(s[K_HOOK], Value::U8(hook));
        rec.set_opt(s[K_PROTOCOL], Value::U16(protocol));
    }
    if let Some(hw) = p.hwaddr() {
        rec.set_opt(s[K_MAC_SADDR], Value::Raw(hw.addr));
        rec.set_opt(s[K_MAC_ADDRLEN], Value::U16(hw.addrlen));
    }
    if let Some(pl) = p.payload() {
        rec.set_opt(s[K_RAW_PKT], Value::Raw(pl));
        rec.set_opt(s[K_RAW_PKTLEN], Value::U32(pl.len));
    }
    rec.set_opt(s[K_RAW_PKTCOUNT], Value::U32(1));
    if s[K_TIME_SEC].is_some() || s[K_TIME_USEC].is_some() {
        let (sec, usec) = match p.timestamp() {
            Some((sec, usec)) if sec != 0 => (sec as u32, usec as u32),
            _ => now(),
        };
        rec.set_opt(s[K_TIME_SEC], Value::U32(sec));
        rec.set_opt(s[K_TIME_USEC], Value::U32(usec));
    }
    rec.set_opt(s[K_MARK], Value::U32(p.mark().unwrap_or(0)));
    if let Some(i) = p.indev().filter(|&i| i > 0) {
        rec.set_opt(s[K_IFINDEX_IN], Value::U32(i));
    }
    if let Some(i) = p.outdev().filter(|&i| i > 0) {
        rec.set_opt(s[K_IFINDEX_OUT], Value::U32(i));
    }
    if let Some(v) = p.uid() {
        rec.set_opt(s[K_UID], Value::U32(v));
    }
    if let Some(v) = p.gid() {
        rec.set_opt(s[K_GID], Value::U32(v));
    }
    rec.set_opt(s[K_RAW], Value::Raw(p.msg()));
    if let Some(ct) = p.ct() {
        rec.set_opt(s[K_CT], Value::Raw(ct));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulogd_plugin::KeyDef;

    #[test]
    fn both_tables_start_with_the_shared_keys() {
        let names = |t: &[KeyDef]| t.iter().map(|k| k.name.to_string()).collect::<Vec<_>>();
        let shared = names(&SHARED_KEYS);
        assert_eq!(names(&crate::nflog::KEYS[..NSHARED]), shared);
        assert_eq!(names(&crate::nfqueue::KEYS[..NSHARED]), shared);
    }
}
