//! PCAP: logged packets in a libpcap capture file (link type 101, raw IP,
//! no link-layer header), as ulogd's `ulogd_output_PCAP` writes it.
//!
//! The 24-byte file header goes only into a file that is empty when it is
//! opened (at start, after a failure, or on SIGHUP); otherwise records are
//! appended. That check runs on the writer thread, in the file transport's
//! open hook, so it is ordered with the data like every reopen. Each record
//! is the 16-byte pcap record header and the packet from its network header.

use crate::rendered::{Render, Rendered};
use crate::text::{now, tz_init};
use rulogd_delivery::{Delivery, DeliveryConfig, FileTransport, OpenHook, WhenFull};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, KeyDef, KeyType, OptionDef, Output, Record, Slot,
};
use std::io::Write;

static OPTIONS: [OptionDef; 2] = [
    OptionDef::str("file", "/var/log/ulogd.pcap", "Capture file"),
    OptionDef::int(
        "sync",
        "0",
        "Hand every packet to the writer at once instead of in 64 KiB batches",
    )
    .flag(),
];

// The types are ulogd's declarations (odd ones included), for --info.
static INPUT: [KeyDef; 7] = [
    KeyDef::new("raw.pkt", KeyType::U32),
    KeyDef::new("raw.pktlen", KeyType::U32),
    KeyDef::new("ip.totlen", KeyType::U16),
    KeyDef::new("oob.time.sec", KeyType::U32),
    KeyDef::new("oob.time.usec", KeyType::U32),
    KeyDef::new("oob.family", KeyType::U8),
    KeyDef::new("ip6.payloadlen", KeyType::U16),
];

rulogd_plugin::plugin! {
    Output "PCAP" (build): "Writes logged packets to a pcap file (link type raw IP)";
    options &OPTIONS;
    input &INPUT;
}

/// libpcap's magic for microsecond files, written in host byte order.
const MAGIC: u32 = 0xa1b2_c3d4;
/// `LINKTYPE_RAW`: packets start at the IP header.
const LINKTYPE_RAW: u32 = 101;
/// ulogd's snaplen: it does not know the copy range in advance.
const SNAPLEN: u32 = 65536;

/// The pcap file header ulogd writes: version 2.4 and, as `thiszone`, libc's
/// `timezone` (seconds west of UTC).
pub fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&MAGIC.to_ne_bytes());
    h[4..6].copy_from_slice(&2u16.to_ne_bytes());
    h[6..8].copy_from_slice(&4u16.to_ne_bytes());
    h[8..12].copy_from_slice(&thiszone().to_ne_bytes());
    // sigfigs (8 bytes in) stays 0.
    h[16..20].copy_from_slice(&SNAPLEN.to_ne_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_RAW.to_ne_bytes());
    h
}

fn thiszone() -> i32 {
    extern "C" {
        // glibc's `long timezone`, set by tzset().
        static timezone: libc::c_long;
    }
    tz_init();
    // SAFETY: a plain read of a libc global that tzset has initialised.
    unsafe { timezone as i32 }
}

/// One PCAP instance in one stack.
pub struct Pcap {
    pkt: Option<Slot>,
    pktlen: Option<Slot>,
    totlen: Option<Slot>,
    sec: Option<Slot>,
    usec: Option<Slot>,
    family: Option<Slot>,
    payloadlen: Option<Slot>,
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    let path = ctx.options.str("file");
    let cfg = DeliveryConfig::new(ctx.instance, "PCAP", WhenFull::Block);
    let delivery = Delivery::shared(ctx, "PCAP", &cfg, || {
        let header = file_header();
        let hook: OpenHook = Box::new(move |f: &mut std::fs::File| {
            if f.metadata()?.len() == 0 {
                f.write_all(&header)?;
            }
            Ok(())
        });
        let mut t = FileTransport::new(path).on_open(hook);
        rulogd_delivery::Transport::open(&mut t)
            .map_err(|e| BuildError::io(format!("PCAP: can't open pcap file {path}"), e))?;
        rulogd_delivery::prepare_reopen(ctx, "PCAP", std::path::Path::new(path));
        Ok(Box::new(t))
    })?;
    Ok(Rendered::boxed(
        delivery.producer(ctx.options.int("sync") != 0),
        Pcap {
            pkt: None,
            pktlen: None,
            totlen: None,
            sec: None,
            usec: None,
            family: None,
            payloadlen: None,
        },
    ))
}

impl Render for Pcap {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.pkt = b.input("raw.pkt");
        self.pktlen = b.input("raw.pktlen");
        self.totlen = b.input("ip.totlen");
        self.sec = b.input("oob.time.sec");
        self.usec = b.input("oob.time.usec");
        self.family = b.input("oob.family");
        self.payloadlen = b.input("ip6.payloadlen");
        Ok(())
    }

    fn render(&mut self, rec: &Record, out: &mut Vec<u8>) -> bool {
        let Some(pkt) = rec.get_bytes(self.pkt) else {
            return false;
        };
        // Never more than the bytes there are, whatever raw.pktlen says.
        let caplen = rec
            .get_u64(self.pktlen)
            .map_or(pkt.len(), |l| (l as usize).min(pkt.len()));
        let pkt = &pkt[..caplen];
        let caplen = caplen as u32;
        // The length on the wire, where the decoded header says it.
        let len = match rec.get_u64(self.family) {
            Some(2) => rec.get_u64(self.totlen).map(|l| l as u16 as u32),
            Some(10) => rec.get_u64(self.payloadlen).map(|l| l as u16 as u32 + 40),
            _ => None,
        }
        .unwrap_or(caplen);
        let (sec, usec) = match (rec.get_u64(self.sec), rec.get_u64(self.usec)) {
            (Some(s), Some(u)) => (s as u32, u as u32),
            _ => {
                let (s, u) = now();
                (s as u32, u)
            }
        };
        out.extend_from_slice(&sec.to_ne_bytes());
        out.extend_from_slice(&usec.to_ne_bytes());
        out.extend_from_slice(&caplen.to_ne_bytes());
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(pkt);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{temp_dir, Harness};
    use rulogd_plugin::{Span, Value};

    fn keys() -> Vec<(&'static str, KeyType)> {
        INPUT
            .iter()
            .map(|k| match &k.name {
                std::borrow::Cow::Borrowed(n) => (*n, k.ty),
                std::borrow::Cow::Owned(_) => unreachable!("static key names"),
            })
            .collect()
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn header_once_then_records_and_a_new_header_after_rotation() {
        let dir = temp_dir("pcap");
        let file = dir.join("p.pcap");
        let mut h = Harness::new(REGISTRATION, &[("file", file.to_str().unwrap())], &keys());
        let v4 = [
            0x45u8, 0, 0, 30, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        h.rec.set_buf(bytes::Bytes::copy_from_slice(&v4));
        h.set("raw.pkt", Value::Raw(Span::new(0, 20)))
            .set("raw.pktlen", Value::U32(20))
            .set("ip.totlen", Value::U16(30))
            .set("oob.family", Value::U8(2))
            .set("oob.time.sec", Value::U32(1_700_000_000))
            .set("oob.time.usec", Value::U32(123_456));
        h.write();
        // IPv6: payload length + 40; no time: now.
        h.rec.set_buf(bytes::Bytes::from_static(&[0x60; 8]));
        h.set("raw.pkt", Value::Raw(Span::new(0, 8)))
            .set("raw.pktlen", Value::U32(8))
            .set("ip6.payloadlen", Value::U16(100))
            .set("oob.family", Value::U8(10));
        h.write();
        // A family without a length key: the captured length.
        h.set("raw.pkt", Value::Raw(Span::new(0, 4)))
            .set("raw.pktlen", Value::U32(4))
            .set("oob.family", Value::U8(7));
        h.write();
        h.hup();
        // A reopen of the same, non-empty file adds no header.
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::rename(&file, dir.join("p.pcap.1")).unwrap();
        h.hup();
        h.set("raw.pkt", Value::Raw(Span::new(0, 2)))
            .set("raw.pktlen", Value::U32(2));
        h.write();
        h.stop();
        let old = std::fs::read(dir.join("p.pcap.1")).unwrap();
        assert_eq!(old[..24], file_header());
        assert_eq!(u32_at(&old, 0), 0xa1b2c3d4);
        assert_eq!(u32_at(&old, 20), 101);
        let r1 = &old[24..];
        assert_eq!(u32_at(r1, 0), 1_700_000_000);
        assert_eq!(u32_at(r1, 4), 123_456);
        assert_eq!((u32_at(r1, 8), u32_at(r1, 12)), (20, 30));
        assert_eq!(&r1[16..36], &v4);
        let r2 = &r1[36..];
        assert_eq!((u32_at(r2, 8), u32_at(r2, 12)), (8, 140));
        let r3 = &r2[24..];
        assert_eq!((u32_at(r3, 8), u32_at(r3, 12)), (4, 4));
        assert_eq!(r3.len(), 16 + 4);
        let new = std::fs::read(&file).unwrap();
        assert_eq!(new.len(), 24 + 16 + 2);
        assert_eq!(new[..24], file_header());
        let _ = std::fs::remove_dir_all(dir);
    }
}
