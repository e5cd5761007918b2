//! PRINTPKT: one line per packet in the kernel `LOG` target's format
//! (`IN=… OUT=… MAC=… SRC=… DST=… LEN=… PROTO=TCP SPT=… DPT=…`), as ulogd2
//! 2.0.9 prints it, in the key `print` (ending with `\n`) for LOGEMU, SYSLOG
//! or JSON.
//!
//! Where ulogd prints a number without checking that its key has a value
//! (`URGP=` without URG, `LEN=` of a cut IPv4 header), 0 is printed: ulogd
//! zeroes every key between events, so it prints 0 there too.

#[cfg(test)]
mod tests;

use rulogd_packet::{arp_op, ethertype, icmp, icmpv6, ip_proto};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Filter, KeyDef, KeyType, Record, Slot, Value, Verdict,
};

/// An input key; ulogd declares none of their types.
const fn k(name: &'static str) -> KeyDef {
    KeyDef::new(name, KeyType::None)
}

/// Declares the input keys once: index constants and the table, in ulogd's
/// order (which `--info` prints).
macro_rules! input_keys {
    ($($id:ident = $def:expr;)*) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms, dead_code)]
        #[repr(usize)]
        enum Idx { $($id),* }
        $(
            #[allow(dead_code)]
            const $id: usize = Idx::$id as usize;
        )*
        /// Number of input keys.
        const N_IN: usize = [$(stringify!($id)),*].len();
        static INPUT_KEYS: [KeyDef; N_IN] = [$($def),*];
    };
}

input_keys! {
    OOB_FAMILY = k("oob.family");
    OOB_PREFIX = k("oob.prefix");
    OOB_IN = k("oob.in");
    OOB_OUT = k("oob.out");
    OOB_UID = k("oob.uid").optional();
    OOB_GID = k("oob.gid").optional();
    OOB_MARK = k("oob.mark");
    RAW_MAC = k("raw.mac");
    RAW_MACLEN = k("raw.mac_len");
    IP_SADDR = k("ip.saddr.str");
    IP_DADDR = k("ip.daddr.str");
    IP_TOTLEN = k("ip.totlen");
    IP_TOS = k("ip.tos");
    IP_TTL = k("ip.ttl");
    IP_ID = k("ip.id");
    IP_FRAGOFF = k("ip.fragoff");
    IP_PROTOCOL = k("ip.protocol");
    IP6_PAYLOAD_LEN = k("ip6.payloadlen");
    IP6_PRIORITY = k("ip6.priority");
    IP6_HOPLIMIT = k("ip6.hoplimit");
    IP6_FLOWLABEL = k("ip6.flowlabel");
    IP6_NEXTHDR = k("ip6.nexthdr");
    IP6_FRAG_OFF = k("ip6.fragoff");
    IP6_FRAG_ID = k("ip6.fragid");
    TCP_SPORT = k("tcp.sport");
    TCP_DPORT = k("tcp.dport");
    TCP_SEQ = k("tcp.seq");
    TCP_ACKSEQ = k("tcp.ackseq");
    TCP_WINDOW = k("tcp.window");
    TCP_SYN = k("tcp.syn");
    TCP_ACK = k("tcp.ack");
    TCP_PSH = k("tcp.psh");
    TCP_RST = k("tcp.rst");
    TCP_FIN = k("tcp.fin");
    TCP_URG = k("tcp.urg");
    TCP_URGP = k("tcp.urgp");
    UDP_SPORT = k("udp.sport");
    UDP_DPORT = k("udp.dport");
    UDP_LEN = k("udp.len");
    ICMP_TYPE = k("icmp.type");
    ICMP_CODE = k("icmp.code");
    ICMP_ECHOID = k("icmp.echoid");
    ICMP_ECHOSEQ = k("icmp.echoseq");
    ICMP_GATEWAY = k("icmp.gateway");
    ICMP_FRAGMTU = k("icmp.fragmtu");
    ICMPV6_TYPE = k("icmpv6.type");
    ICMPV6_CODE = k("icmpv6.code");
    ICMPV6_ECHOID = k("icmpv6.echoid");
    ICMPV6_ECHOSEQ = k("icmpv6.echoseq");
    AHESP_SPI = k("ahesp.spi");
    OOB_PROTOCOL = k("oob.protocol");
    ARP_HTYPE = k("arp.hwtype");
    ARP_PTYPE = k("arp.protocoltype");
    ARP_OPCODE = k("arp.operation");
    ARP_SHA = k("arp.shwaddr");
    ARP_SPA = k("arp.saddr.str");
    ARP_THA = k("arp.dhwaddr");
    ARP_TPA = k("arp.daddr.str");
    SCTP_SPORT = k("sctp.sport");
    SCTP_DPORT = k("sctp.dport");
}

static OUTPUT_KEYS: [KeyDef; 1] = [KeyDef::new("print", KeyType::String)];

rulogd_plugin::plugin! {
    Filter "PRINTPKT" (build): "formats a packet as the kernel LOG target's line (key `print`)";
    input &INPUT_KEYS;
    output &OUTPUT_KEYS;
}

fn build(_ctx: &BuildCtx) -> Result<Box<dyn Filter>, BuildError> {
    Ok(Box::new(PrintPkt {
        inputs: [None; N_IN],
        out: None,
        // Longer than any line: a 128-byte prefix, two interface names and
        // a 42-byte MAC header stay well under it.
        line: Vec::with_capacity(1024),
    }))
}

struct PrintPkt {
    inputs: [Option<Slot>; N_IN],
    out: Option<Slot>,
    /// The line being built, reused for every record.
    line: Vec<u8>,
}

impl Filter for PrintPkt {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        for (slot, key) in self.inputs.iter_mut().zip(INPUT_KEYS.iter()) {
            *slot = b.input(&key.name);
        }
        self.out = b.output_if_active(0);
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        let Some(out) = self.out else {
            return Verdict::Continue;
        };
        self.line.clear();
        let keys = Keys {
            rec,
            slots: &self.inputs,
        };
        print(&keys, &mut self.line);
        // The value must own its bytes (the record outlives this call and
        // this buffer is reused), so one allocation per line: Value has no
        // pooled string form, and the line never fits an InlineStr.
        let v = Value::text(&self.line);
        rec.set(out, v);
        Verdict::Continue
    }
}

/// The record seen through PRINTPKT's bound inputs.
struct Keys<'a> {
    rec: &'a Record,
    slots: &'a [Option<Slot>; N_IN],
}

impl Keys<'_> {
    fn value(&self, k: usize) -> Option<&Value> {
        self.rec.get_opt(self.slots[k])
    }

    fn valid(&self, k: usize) -> bool {
        self.value(k).is_some()
    }

    /// A number, 0 when the key has no value for this packet.
    fn num(&self, k: usize) -> u64 {
        self.value(k).and_then(Value::as_u64).unwrap_or(0)
    }

    /// Bytes of a string or raw key, if valid.
    fn bytes(&self, k: usize) -> Option<&[u8]> {
        self.value(k).and_then(|v| self.rec.bytes_of(v))
    }

    /// A string key as C's `%s` prints it: up to the first NUL.
    fn text(&self, k: usize) -> &[u8] {
        let b = self.bytes(k).unwrap_or(&[]);
        b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
    }

    /// An IPv4 address key as its four wire bytes (0.0.0.0 without one).
    fn ipv4(&self, k: usize) -> [u8; 4] {
        match self.value(k) {
            Some(Value::Ipv4(a)) => a.octets(),
            Some(v) => v.as_u64().map_or([0; 4], |n| (n as u32).to_be_bytes()),
            None => [0; 4],
        }
    }
}

/// Appends the decimal digits of `v`.
fn dec(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends `v` in hex, lowercase, at least `width` digits (`%x`, `%08x`).
fn hex(out: &mut Vec<u8>, v: u64, width: usize, upper: bool) {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let n = ((64 - v.leading_zeros() as usize).div_ceil(4))
        .max(width)
        .max(1);
    for i in (0..n).rev() {
        let d = if i < 16 { (v >> (4 * i)) & 0xf } else { 0 };
        out.push(digits[d as usize]);
    }
}

/// Appends `label`, the decimal `v` and a space.
fn field(out: &mut Vec<u8>, label: &[u8], v: u64) {
    out.extend_from_slice(label);
    dec(out, v);
    out.push(b' ');
}

/// Appends `label`, the text of key `k` and a space.
fn text_field(out: &mut Vec<u8>, label: &[u8], keys: &Keys, k: usize) {
    out.extend_from_slice(label);
    out.extend_from_slice(keys.text(k));
    out.push(b' ');
}

/// Appends `bytes` as `aa:bb:…` followed by `last` (ulogd prints nothing at
/// all for no bytes, not even `last`).
fn hw_addr(out: &mut Vec<u8>, bytes: &[u8], last: u8) {
    for (i, &b) in bytes.iter().enumerate() {
        hex(out, u64::from(b), 2, false);
        out.push(if i + 1 == bytes.len() { last } else { b':' });
    }
}

/// The whole line for one packet.
fn print(keys: &Keys, out: &mut Vec<u8>) {
    if keys.valid(OOB_PREFIX) {
        out.extend_from_slice(keys.text(OOB_PREFIX));
        out.push(b' ');
    }
    if keys.valid(OOB_IN) && keys.valid(OOB_OUT) {
        text_field(out, b"IN=", keys, OOB_IN);
        text_field(out, b"OUT=", keys, OOB_OUT);
    }
    match keys.bytes(RAW_MAC) {
        Some(mac) => {
            // ulogd prints raw.mac_len bytes; never more than there are.
            let n = usize::from(keys.num(RAW_MACLEN) as u16).min(mac.len());
            out.extend_from_slice(b"MAC=");
            hw_addr(out, &mac[..n], b' ');
        }
        None => out.extend_from_slice(b"MAC= "),
    }
    match keys.num(OOB_FAMILY) as u8 {
        2 => ipv4(keys, out),
        10 => ipv6(keys, out),
        7 => match keys.num(OOB_PROTOCOL) as u16 {
            ethertype::IPV4 => ipv4(keys, out),
            ethertype::IPV6 => ipv6(keys, out),
            ethertype::ARP => arp(keys, out),
            p => field(out, b"PROTO=", u64::from(p)),
        },
        // Native ARP logging, as ulogd master prints it.
        3 => arp(keys, out),
        _ => {}
    }
    if keys.valid(OOB_UID) {
        field(out, b"UID=", keys.num(OOB_UID) as u32 as u64);
    }
    if keys.valid(OOB_GID) {
        field(out, b"GID=", keys.num(OOB_GID) as u32 as u64);
    }
    if keys.valid(OOB_MARK) {
        out.extend_from_slice(b"MARK=0x");
        hex(out, keys.num(OOB_MARK) as u32 as u64, 1, false);
        out.push(b' ');
    }
    out.push(b'\n');
}

/// The layer-4 part shared by IPv4 and IPv6 for TCP, UDP, SCTP, ESP, AH.
fn l4(keys: &Keys, out: &mut Vec<u8>, protocol: u8) {
    let (name, first): (&[u8], usize) = match protocol {
        ip_proto::TCP => (b"PROTO=TCP ", TCP_SPORT),
        ip_proto::UDP => (b"PROTO=UDP ", UDP_SPORT),
        ip_proto::SCTP => (b"PROTO=SCTP ", SCTP_SPORT),
        // ulogd picks the name from ip.protocol, which IPv6 does not set
        // for ESP (so it says AH); the protocol being printed is right.
        ip_proto::ESP => (b"PROTO=ESP ", AHESP_SPI),
        ip_proto::AH => (b"PROTO=AH ", AHESP_SPI),
        _ => return,
    };
    out.extend_from_slice(name);
    if !keys.valid(first) {
        // No space after it, as in ulogd: `INCOMPLETEUID=0`.
        out.extend_from_slice(b"INCOMPLETE");
        return;
    }
    let u16_of = |k| u64::from(keys.num(k) as u16);
    let u32_of = |k| u64::from(keys.num(k) as u32);
    match protocol {
        ip_proto::TCP => {
            field(out, b"SPT=", u16_of(TCP_SPORT));
            field(out, b"DPT=", u16_of(TCP_DPORT));
            field(out, b"SEQ=", u32_of(TCP_SEQ));
            field(out, b"ACK=", u32_of(TCP_ACKSEQ));
            field(out, b"WINDOW=", u16_of(TCP_WINDOW));
            for (k, flag) in [
                (TCP_URG, &b"URG "[..]),
                (TCP_ACK, b"ACK "),
                (TCP_PSH, b"PSH "),
                (TCP_RST, b"RST "),
                (TCP_SYN, b"SYN "),
                (TCP_FIN, b"FIN "),
            ] {
                if keys.num(k) as u8 != 0 {
                    out.extend_from_slice(flag);
                }
            }
            field(out, b"URGP=", u16_of(TCP_URGP));
        }
        ip_proto::UDP => {
            field(out, b"SPT=", u16_of(UDP_SPORT));
            field(out, b"DPT=", u16_of(UDP_DPORT));
            field(out, b"LEN=", u16_of(UDP_LEN));
        }
        ip_proto::SCTP => {
            field(out, b"SPT=", u16_of(SCTP_SPORT));
            field(out, b"DPT=", u16_of(SCTP_DPORT));
        }
        _ => {
            out.extend_from_slice(b"SPI=0x");
            hex(out, u32_of(AHESP_SPI), 1, false);
            out.push(b' ');
        }
    }
}

fn ipv4(keys: &Keys, out: &mut Vec<u8>) {
    if keys.valid(IP_SADDR) {
        text_field(out, b"SRC=", keys, IP_SADDR);
    }
    if keys.valid(IP_DADDR) {
        text_field(out, b"DST=", keys, IP_DADDR);
    }
    let tos = keys.num(IP_TOS) as u8;
    field(out, b"LEN=", u64::from(keys.num(IP_TOTLEN) as u16));
    out.extend_from_slice(b"TOS=");
    hex(out, u64::from(tos & 0x1e), 2, true);
    out.extend_from_slice(b" PREC=0x");
    hex(out, u64::from(tos & 0xe0), 2, true);
    out.push(b' ');
    field(out, b"TTL=", u64::from(keys.num(IP_TTL) as u8));
    field(out, b"ID=", u64::from(keys.num(IP_ID) as u16));
    let frag = keys.num(IP_FRAGOFF) as u16;
    for (bit, flag) in [(0x8000, &b"CE "[..]), (0x4000, b"DF "), (0x2000, b"MF ")] {
        if frag & bit != 0 {
            out.extend_from_slice(flag);
        }
    }
    if frag & 0x1fff != 0 {
        out.extend_from_slice(b"FRAG:");
        dec(out, u64::from(frag & 0x1fff));
        out.push(b' ');
    }
    match keys.num(IP_PROTOCOL) as u8 {
        p @ (ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP | ip_proto::ESP | ip_proto::AH) => {
            l4(keys, out, p)
        }
        ip_proto::ICMP => icmp(keys, out),
        p => field(out, b"PROTO=", u64::from(p)),
    }
}

fn icmp(keys: &Keys, out: &mut Vec<u8>) {
    out.extend_from_slice(b"PROTO=ICMP ");
    if !keys.valid(ICMP_TYPE) {
        out.extend_from_slice(b"INCOMPLETE");
        return;
    }
    let (ty, code) = (keys.num(ICMP_TYPE) as u8, keys.num(ICMP_CODE) as u8);
    field(out, b"TYPE=", u64::from(ty));
    field(out, b"CODE=", u64::from(code));
    // ulogd switches on the code here (so a "network unreachable" prints an
    // echo id and a "fragmentation needed" no MTU); the extra fields belong
    // to the type, as the kernel prints them (docs/COMPATIBILITY.md).
    match ty {
        icmp::ECHO | icmp::ECHOREPLY => {
            field(out, b"ID=", u64::from(keys.num(ICMP_ECHOID) as u16));
            field(out, b"SEQ=", u64::from(keys.num(ICMP_ECHOSEQ) as u16));
        }
        // The pointer is the first byte of what BASE reads as the gateway.
        icmp::PARAMETERPROB => field(out, b"PARAMETER=", u64::from(keys.ipv4(ICMP_GATEWAY)[0])),
        icmp::REDIRECT => {
            out.extend_from_slice(b"GATEWAY=");
            for (i, b) in keys.ipv4(ICMP_GATEWAY).into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                dec(out, u64::from(b));
            }
            out.push(b' ');
        }
        icmp::DEST_UNREACH if code == icmp::FRAG_NEEDED => {
            field(out, b"MTU=", u64::from(keys.num(ICMP_FRAGMTU) as u16));
        }
        _ => {}
    }
}

fn ipv6(keys: &Keys, out: &mut Vec<u8>) {
    if keys.valid(IP_SADDR) {
        text_field(out, b"SRC=", keys, IP_SADDR);
    }
    if keys.valid(IP_DADDR) {
        text_field(out, b"DST=", keys, IP_DADDR);
    }
    if keys.valid(IP6_PAYLOAD_LEN) {
        // The whole packet: payload plus the 40-byte fixed header.
        field(
            out,
            b"LEN=",
            u64::from(keys.num(IP6_PAYLOAD_LEN) as u16) + 40,
        );
    }
    if keys.valid(IP6_PRIORITY) {
        field(out, b"TC=", u64::from(keys.num(IP6_PRIORITY) as u8));
    }
    if keys.valid(IP6_HOPLIMIT) {
        field(out, b"HOPLIMIT=", u64::from(keys.num(IP6_HOPLIMIT) as u8));
    }
    if keys.valid(IP6_FLOWLABEL) {
        field(out, b"FLOWLBL=", u64::from(keys.num(IP6_FLOWLABEL) as u32));
    }
    if keys.valid(IP6_FRAG_OFF) && keys.valid(IP6_FRAG_ID) {
        field(out, b"FRAG: ", u64::from(keys.num(IP6_FRAG_OFF) as u16));
        out.extend_from_slice(b"ID: ");
        hex(out, u64::from(keys.num(IP6_FRAG_ID) as u32), 8, false);
        out.push(b' ');
    }
    match keys.num(IP6_NEXTHDR) as u8 {
        p @ (ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP | ip_proto::ESP | ip_proto::AH) => {
            l4(keys, out, p)
        }
        ip_proto::ICMPV6 => {
            out.extend_from_slice(b"PROTO=ICMPv6 ");
            if !keys.valid(ICMPV6_TYPE) {
                out.extend_from_slice(b"INCOMPLETE");
                return;
            }
            if !keys.valid(ICMPV6_CODE) {
                out.extend_from_slice(b"TRUNCATED");
                return;
            }
            let ty = keys.num(ICMPV6_TYPE) as u8;
            field(out, b"TYPE=", u64::from(ty));
            field(out, b"CODE=", u64::from(keys.num(ICMPV6_CODE) as u8));
            if matches!(ty, icmpv6::ECHO_REQUEST | icmpv6::ECHO_REPLY) {
                field(out, b"ID=", u64::from(keys.num(ICMPV6_ECHOID) as u16));
                field(out, b"SEQ=", u64::from(keys.num(ICMPV6_ECHOSEQ) as u16));
            }
        }
        p => field(out, b"PROTO=", u64::from(p)),
    }
}

fn arp(keys: &Keys, out: &mut Vec<u8>) {
    if keys.valid(ARP_SPA) {
        text_field(out, b"SRC=", keys, ARP_SPA);
    }
    if keys.valid(ARP_TPA) {
        text_field(out, b"DST=", keys, ARP_TPA);
    }
    out.extend_from_slice(b"PROTO=ARP ");
    if !keys.valid(ARP_OPCODE) {
        return;
    }
    let code = keys.num(ARP_OPCODE) as u16;
    match code {
        arp_op::REQUEST => out.extend_from_slice(b"REQUEST "),
        arp_op::REPLY => out.extend_from_slice(b"REPLY "),
        arp_op::NAK => out.extend_from_slice(b"NAK "),
        c => field(out, b"CODE=", u64::from(c)),
    }
    if code == arp_op::REPLY {
        // Six bytes, as ulogd prints them; fewer only if fewer were captured.
        if let Some(mac) = keys.bytes(ARP_SHA) {
            out.extend_from_slice(b"REPLY_MAC=");
            hw_addr(out, &mac[..mac.len().min(6)], b' ');
        }
    }
}
