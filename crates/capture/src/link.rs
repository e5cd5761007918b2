//! Link layers: where the network-layer packet starts in a captured frame,
//! and the facts NFLOG would give for it (hardware header, source address,
//! ethertype, ARPHRD type, protocol family).

/// LINKTYPE_ETHERNET.
pub const ETHERNET: u16 = 1;
/// LINKTYPE_RAW: an IPv4 or IPv6 packet, no link header.
pub const RAW: u16 = 101;
/// LINKTYPE_LINUX_SLL: Linux cooked capture, version 1.
pub const LINUX_SLL: u16 = 113;
/// LINKTYPE_IPV4.
pub const IPV4: u16 = 228;
/// LINKTYPE_IPV6.
pub const IPV6: u16 = 229;
/// LINKTYPE_LINUX_SLL2: Linux cooked capture, version 2.
pub const LINUX_SLL2: u16 = 276;

/// ARPHRD_ETHER.
const ARPHRD_ETHER: u16 = 1;
/// ARPHRD_NONE: what a raw IP capture has.
const ARPHRD_NONE: u16 = 0xfffe;

/// Netfilter families, as NFLOG's `oob.family` gives them.
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_ARP: u8 = 3;
const NFPROTO_BRIDGE: u8 = 7;
const NFPROTO_IPV6: u8 = 10;

/// One decoded frame: offsets into the captured bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// The hardware header (offset, length), when the capture has it.
    pub mac: Option<(usize, usize)>,
    /// The source hardware address (offset, length).
    pub saddr: Option<(usize, usize)>,
    /// Where the network-layer packet starts.
    pub l3: usize,
    /// The ethertype of that packet (inner one after VLAN tags).
    pub ethertype: u16,
    /// `oob.family`: 2 IPv4, 10 IPv6, 3 ARP, 7 anything else on a link.
    pub family: u8,
    /// The ARPHRD type of the link.
    pub arphrd: u16,
    /// The outermost VLAN id, if the frame was tagged.
    pub vlan: Option<u16>,
    /// The interface index an SLL2 capture records.
    pub ifindex: Option<u32>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn family_of(ethertype: u16) -> u8 {
    match ethertype {
        0x0800 => NFPROTO_IPV4,
        0x86dd => NFPROTO_IPV6,
        0x0806 => NFPROTO_ARP,
        _ => NFPROTO_BRIDGE,
    }
}

/// Decodes the link header of a frame of `linktype`; `None` for a link type
/// this reader does not know or a frame too short for its own header.
pub fn decode(linktype: u16, f: &[u8]) -> Option<Frame> {
    match linktype {
        ETHERNET => ethernet(f),
        LINUX_SLL => {
            // pkttype, ARPHRD, address length, 8 address bytes, protocol.
            let h = f.get(..16)?;
            let alen = usize::from(be16(h, 4)).min(8);
            let ethertype = be16(h, 14);
            Some(Frame {
                mac: None,
                saddr: (alen > 0).then_some((6, alen)),
                l3: 16,
                ethertype,
                family: family_of(ethertype),
                arphrd: be16(h, 2),
                vlan: None,
                ifindex: None,
            })
        }
        LINUX_SLL2 => {
            // protocol, reserved, ifindex, ARPHRD, pkttype, address length,
            // 8 address bytes.
            let h = f.get(..20)?;
            let ethertype = be16(h, 0);
            let alen = usize::from(h[11]).min(8);
            Some(Frame {
                mac: None,
                saddr: (alen > 0).then_some((12, alen)),
                l3: 20,
                ethertype,
                family: family_of(ethertype),
                arphrd: be16(h, 8),
                vlan: None,
                ifindex: Some(u32::from_be_bytes([h[4], h[5], h[6], h[7]])),
            })
        }
        RAW | IPV4 | IPV6 => {
            let ethertype = match f.first()? >> 4 {
                4 => 0x0800,
                6 => 0x86dd,
                _ => return None,
            };
            Some(Frame {
                l3: 0,
                ethertype,
                family: family_of(ethertype),
                arphrd: ARPHRD_NONE,
                ..Frame::default()
            })
        }
        _ => None,
    }
}

/// Ethernet II with up to two 802.1Q/802.1ad tags.
fn ethernet(f: &[u8]) -> Option<Frame> {
    f.get(..14)?;
    let mut ethertype = be16(f, 12);
    let mut l3 = 14;
    let mut vlan = None;
    for _ in 0..2 {
        if !matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) || f.len() < l3 + 4 {
            break;
        }
        vlan.get_or_insert(be16(f, l3) & 0x0fff);
        ethertype = be16(f, l3 + 2);
        l3 += 4;
    }
    Some(Frame {
        mac: Some((0, l3)),
        saddr: Some((6, 6)),
        l3,
        ethertype,
        family: family_of(ethertype),
        arphrd: ARPHRD_ETHER,
        vlan,
        ifindex: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_with_two_tags_gives_the_inner_type_and_outer_vlan() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[
            0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x14, 0x86, 0xdd, 0x60,
        ]);
        let fr = decode(ETHERNET, &f).unwrap();
        assert_eq!(
            (fr.l3, fr.ethertype, fr.family, fr.vlan),
            (22, 0x86dd, 10, Some(10))
        );
        assert_eq!(fr.mac, Some((0, 22)));
    }

    #[test]
    fn cooked_and_raw_links() {
        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.push(0x45);
        let fr = decode(LINUX_SLL, &sll).unwrap();
        assert_eq!(
            (fr.l3, fr.family, fr.saddr, fr.arphrd),
            (16, 2, Some((6, 6)), 1)
        );
        let mut sll2 = vec![0x08, 0x06, 0, 0, 0, 0, 0, 7, 0, 1, 0, 6];
        sll2.extend_from_slice(&[0; 8]);
        let fr = decode(LINUX_SLL2, &sll2).unwrap();
        assert_eq!((fr.l3, fr.family, fr.ifindex), (20, 3, Some(7)));
        assert_eq!(decode(RAW, &[0x60]).unwrap().family, 10);
        assert_eq!(decode(RAW, &[0x20]), None);
        assert_eq!(decode(ETHERNET, &[0; 13]), None);
        assert_eq!(decode(999, &[0; 64]), None);
    }
}
