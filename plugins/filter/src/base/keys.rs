//! BASE's key tables, in ulogd 2.0.8's order, with an index constant per key.

use rulogd_plugin::{KeyDef, KeyType};

use KeyType::{Bool, IpAddr, Raw, U16, U32, U8};

/// IPFIX vendor id ulogd gives its own (non-IETF) elements.
const NETFILTER: u32 = 21373;

/// An IETF IPFIX element id.
const fn ietf(k: KeyDef, id: u16) -> KeyDef {
    k.ipfix(0, id)
}

rulogd_plugin::key_table! {
    /// BASE's output keys.
    pub(crate) static OUTPUT_KEYS: [KeyDef; N_OUT];
    IP_SADDR = ietf(KeyDef::new("ip.saddr", IpAddr), 8);
    IP_DADDR = ietf(KeyDef::new("ip.daddr", IpAddr), 12);
    IP_PROTOCOL = ietf(KeyDef::new("ip.protocol", U8), 4);
    IP_TOS = ietf(KeyDef::new("ip.tos", U8), 5);
    IP_TTL = ietf(KeyDef::new("ip.ttl", U8), 192);
    IP_TOTLEN = ietf(KeyDef::new("ip.totlen", U16), 190);
    IP_IHL = ietf(KeyDef::new("ip.ihl", U8), 207);
    IP_CSUM = KeyDef::new("ip.csum", U16);
    IP_ID = ietf(KeyDef::new("ip.id", U16), 54);
    IP_FRAGOFF = ietf(KeyDef::new("ip.fragoff", U16), 88);
    IP6_PAYLOADLEN = ietf(KeyDef::new("ip6.payloadlen", U16), 191);
    IP6_PRIORITY = KeyDef::new("ip6.priority", U8);
    IP6_FLOWLABEL = ietf(KeyDef::new("ip6.flowlabel", U32), 31);
    IP6_HOPLIMIT = KeyDef::new("ip6.hoplimit", U8);
    IP6_NEXTHDR = ietf(KeyDef::new("ip6.nexthdr", U8), 193);
    IP6_FRAGOFF = KeyDef::new("ip6.fragoff", U16);
    IP6_FRAGID = KeyDef::new("ip6.fragid", U32);
    TCP_SPORT = ietf(KeyDef::new("tcp.sport", U16), 182).cim("src_port");
    TCP_DPORT = ietf(KeyDef::new("tcp.dport", U16), 183).cim("dest_port");
    TCP_SEQ = ietf(KeyDef::new("tcp.seq", U32), 184);
    TCP_ACKSEQ = ietf(KeyDef::new("tcp.ackseq", U32), 185);
    TCP_WINDOW = ietf(KeyDef::new("tcp.window", U16), 186);
    TCP_OFFSET = KeyDef::new("tcp.offset", U8);
    TCP_RESERVED = KeyDef::new("tcp.reserved", U8);
    TCP_URG = KeyDef::new("tcp.urg", Bool);
    TCP_URGP = ietf(KeyDef::new("tcp.urgp", U16), 187);
    TCP_ACK = KeyDef::new("tcp.ack", Bool);
    TCP_PSH = KeyDef::new("tcp.psh", Bool);
    TCP_RST = KeyDef::new("tcp.rst", Bool);
    TCP_SYN = KeyDef::new("tcp.syn", Bool);
    TCP_FIN = KeyDef::new("tcp.fin", Bool);
    TCP_RES1 = KeyDef::new("tcp.res1", Bool);
    TCP_RES2 = KeyDef::new("tcp.res2", Bool);
    TCP_CSUM = KeyDef::new("tcp.csum", U16);
    UDP_SPORT = ietf(KeyDef::new("udp.sport", U16), 180).cim("src_port");
    UDP_DPORT = ietf(KeyDef::new("udp.dport", U16), 181).cim("dest_port");
    UDP_LEN = KeyDef::new("udp.len", U16);
    UDP_CSUM = KeyDef::new("udp.csum", U16);
    ICMP_TYPE = ietf(KeyDef::new("icmp.type", U8), 176);
    ICMP_CODE = ietf(KeyDef::new("icmp.code", U8), 177);
    ICMP_ECHOID = KeyDef::new("icmp.echoid", U16);
    ICMP_ECHOSEQ = KeyDef::new("icmp.echoseq", U16);
    ICMP_GATEWAY = KeyDef::new("icmp.gateway", IpAddr);
    ICMP_FRAGMTU = KeyDef::new("icmp.fragmtu", U16);
    ICMP_CSUM = KeyDef::new("icmp.csum", U16);
    ICMPV6_TYPE = ietf(KeyDef::new("icmpv6.type", U8), 178);
    ICMPV6_CODE = ietf(KeyDef::new("icmpv6.code", U8), 179);
    ICMPV6_ECHOID = KeyDef::new("icmpv6.echoid", U16);
    ICMPV6_ECHOSEQ = KeyDef::new("icmpv6.echoseq", U16);
    ICMPV6_CSUM = KeyDef::new("icmpv6.csum", U16);
    AHESP_SPI = KeyDef::new("ahesp.spi", U32);
    OOB_PROTOCOL = KeyDef::new("oob.protocol", U16);
    ARP_HWTYPE = KeyDef::new("arp.hwtype", U16);
    ARP_PROTOCOLTYPE = KeyDef::new("arp.protocoltype", U16);
    ARP_OPERATION = KeyDef::new("arp.operation", U16);
    ARP_SHWADDR = KeyDef::new("arp.shwaddr", Raw);
    ARP_SADDR = KeyDef::new("arp.saddr", IpAddr);
    ARP_DHWADDR = KeyDef::new("arp.dhwaddr", Raw);
    ARP_DADDR = KeyDef::new("arp.daddr", IpAddr);
    SCTP_SPORT = KeyDef::new("sctp.sport", U16).cim("src_port");
    SCTP_DPORT = KeyDef::new("sctp.dport", U16).cim("dest_port");
    SCTP_CSUM = KeyDef::new("sctp.csum", U32);
}

/// BASE's input keys; ulogd declares all four mandatory.
pub(crate) static INPUT_KEYS: [KeyDef; 4] = [
    KeyDef::new("raw.pkt", Raw).ipfix(NETFILTER, 1),
    KeyDef::new("raw.pktlen", U32).ipfix(NETFILTER, 2),
    KeyDef::new("oob.family", U8),
    KeyDef::new("oob.protocol", U16),
];

/// The name of output key `k` ("" if there is none).
pub(crate) fn name_of(k: usize) -> &'static str {
    OUTPUT_KEYS.get(k).map_or("", |d| &d.name)
}
