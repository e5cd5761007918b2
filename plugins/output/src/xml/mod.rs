//! XML: logged packets as XML elements, as ulogd's `ulogd_output_XML` writes
//! them with libnetfilter_log 1.0.2's `nflog_snprintf_xml(NFLOG_XML_ALL)`.
//!
//! The file is `<directory>/ulogd-pkt-DDMMYYYY-HHMMSS.xml`, named from the
//! local time it is opened at; it starts with the XML declaration and
//! `<packet>`, holds one `<log>…</log>` line per record and ends with
//! `</packet>` when rulogd stops or SIGHUP moves on to a new time-stamped
//! file. `stdout=1` writes to standard output instead.
//!
//! The `raw` key (NFLOG's whole netlink message) is decoded again here, since
//! the element also shows attributes no key carries (bridge ports, the
//! conntrack id). Flow (`ct`, NFCT) and sum (NFACCT) documents are not
//! written yet: a stack whose input is not NFLOG is refused when it is built.

use crate::text::{local_tm, now, push_u64};
use rulogd_delivery::{
    write_records, Batch, Delivery, DeliveryConfig, DeliveryStats, Producer, SendError, Transport,
    WhenFull,
};
use rulogd_netlink::nflog::{parse_packet, NflogPacket};
use rulogd_netlink::Attrs;
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, KeyDef, KeyType, OptionDef, Output, OutputError, Record, Slot,
};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};

static OPTIONS: [OptionDef; 3] = [
    OptionDef::str(
        "directory",
        "/var/log/",
        "Directory of the ulogd-pkt-DDMMYYYY-HHMMSS.xml files",
    ),
    OptionDef::int(
        "sync",
        "0",
        "Hand every element to the writer at once instead of in 64 KiB batches",
    )
    .flag(),
    OptionDef::int("stdout", "0", "Write to standard output instead of a file").flag(),
];

static INPUT: [KeyDef; 3] = [
    KeyDef::new("ct", KeyType::Raw).optional(),
    KeyDef::new("raw", KeyType::Raw).optional(),
    KeyDef::new("sum", KeyType::Raw).optional(),
];

rulogd_plugin::plugin! {
    Output "XML" (build): "Writes logged packets as XML (libnetfilter_log's format)";
    options &OPTIONS;
    input &INPUT;
}

const DECLARATION: &[u8] = b"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n";
/// `CTA_ID` inside `NFULA_CT`.
const CTA_ID: u16 = 12;

/// One XML instance in one stack.
pub struct Xml {
    producer: Producer,
    raw: Option<Slot>,
    ct: Option<Slot>,
    /// The last second rendered and its `<when>…</when>` element.
    when: Option<(i64, Vec<u8>)>,
    told_ct: bool,
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    let o = ctx.options;
    let target = if o.int("stdout") != 0 {
        Target::Stdout
    } else {
        Target::Dir(o.str("directory").to_string())
    };
    let cfg = DeliveryConfig::new(ctx.instance, "XML", WhenFull::Block);
    let delivery = Delivery::shared(ctx, "XML", &cfg, || {
        // Packets only for now, so the document is always a packet one.
        let mut t = XmlTransport::new(target, "pkt", "packet");
        t.open()
            .map_err(|e| BuildError::io(format!("XML: can't open {}", t.describe()), e))?;
        if let Some(dir) = o.int("stdout").eq(&0).then(|| o.str("directory")) {
            ctx.shared.reopens_in(
                dir.into(),
                format!(
                    "{} (XML) starts a new file in {dir} on SIGHUP",
                    ctx.instance
                ),
            );
        }
        Ok(Box::new(t))
    })?;
    Ok(Box::new(Xml {
        producer: delivery.producer(o.int("sync") != 0),
        raw: None,
        ct: None,
        when: None,
        told_ct: false,
    }))
}

impl Output for Xml {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.raw = b.input("raw");
        self.ct = b.input("ct");
        if self.raw.is_none() || b.input("sum").is_some() {
            return Err(BuildError::Other(
                "XML writes NFLOG packets only (key `raw`); flow (`ct`, NFCT) and sum \
                 (NFACCT) documents are not supported yet"
                    .into(),
            ));
        }
        Ok(())
    }

    fn write(&mut self, rec: &Record) -> Result<(), OutputError> {
        let Some(msg) = rec.get_bytes(self.raw) else {
            return Ok(());
        };
        let p = parse_packet(msg).map_err(|e| {
            OutputError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("XML: raw is not an NFLOG message: {e}"),
            ))
        })?;
        if !self.told_ct && rec.get_opt(self.ct).is_some() {
            self.told_ct = true;
            log::warn!(
                "XML: the conntrack part of NFLOG records (attach_conntrack=1) is not \
                 written yet; writing the packet part only"
            );
        }
        let secs = now().0;
        if self.when.as_ref().is_none_or(|(s, _)| *s != secs) {
            self.when = Some((secs, when_element(secs)));
        }
        let when = self.when.as_ref().map_or(&[][..], |(_, w)| w);
        let out = self.producer.batch().buf();
        render_log(out, msg, &p, when);
        out.push(b'\n');
        self.producer.commit()
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        self.producer.flush()
    }
}

/// `<when>` with the local time of `secs`, as libnetfilter_log prints it
/// (hour unpadded, minutes and seconds two digits, Sunday = 1).
pub fn when_element(secs: i64) -> Vec<u8> {
    let tm = local_tm(secs);
    let mut w = Vec::with_capacity(128);
    let mut el = |name: &[u8], v: i64, pad2: bool| {
        w.push(b'<');
        w.extend_from_slice(name);
        w.push(b'>');
        if pad2 && (0..10).contains(&v) {
            w.push(b'0');
        }
        crate::text::push_i64(&mut w, v);
        w.extend_from_slice(b"</");
        w.extend_from_slice(name);
        w.push(b'>');
    };
    el(b"hour", tm.tm_hour.into(), false);
    el(b"min", tm.tm_min.into(), true);
    el(b"sec", tm.tm_sec.into(), true);
    el(b"wday", i64::from(tm.tm_wday) + 1, false);
    el(b"day", tm.tm_mday.into(), false);
    el(b"month", i64::from(tm.tm_mon) + 1, false);
    el(b"year", 1900 + i64::from(tm.tm_year), false);
    let mut out = b"<when>".to_vec();
    out.extend_from_slice(&w);
    out.extend_from_slice(b"</when>");
    out
}

fn push_tag_u32(out: &mut Vec<u8>, name: &[u8], v: u32) {
    out.push(b'<');
    out.extend_from_slice(name);
    out.push(b'>');
    push_u64(out, v.into());
    out.extend_from_slice(b"</");
    out.extend_from_slice(name);
    out.push(b'>');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// Text with `&`, `<` and `>` escaped (libnetfilter_log does not escape the
/// prefix, which makes a document with such a prefix unreadable).
fn push_escaped(out: &mut Vec<u8>, s: &[u8]) {
    for &c in s {
        match c {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            _ => out.push(c),
        }
    }
}

/// The conntrack id inside `NFULA_CT`, if there is one.
fn ctid(msg: &[u8], p: &NflogPacket) -> Option<u32> {
    let ct = p.ct?;
    let start = ct.off as usize;
    Attrs::new(msg, start, start + ct.len as usize)
        .map_while(Result::ok)
        .find(|a| a.kind == CTA_ID)
        .and_then(|a| a.be32(msg).ok())
}

/// Appends the `<log>` element of packet `p` (decoded from `msg`), with
/// every part `NFLOG_XML_ALL` asks for, in libnetfilter_log's order.
pub fn render_log(out: &mut Vec<u8>, msg: &[u8], p: &NflogPacket, when: &[u8]) {
    let bytes = |s: rulogd_plugin::Span| {
        msg.get(s.off as usize..(s.off + s.len) as usize)
            .unwrap_or(&[])
    };
    out.extend_from_slice(b"<log>");
    out.extend_from_slice(when);
    if let Some(pfx) = p.prefix {
        out.extend_from_slice(b"<prefix>");
        push_escaped(out, bytes(pfx));
        out.extend_from_slice(b"</prefix>");
    }
    if let Some(h) = p.hdr {
        push_tag_u32(out, b"hook", h.hook.into());
        out.extend_from_slice(b"<hw><proto>");
        push_hex(out, &h.hw_protocol.to_be_bytes());
        out.extend_from_slice(b"</proto>");
        if let Some(hw) = p.hwaddr {
            out.extend_from_slice(b"<src>");
            push_hex(out, bytes(hw.addr));
            out.extend_from_slice(b"</src>");
        }
        out.extend_from_slice(b"</hw>");
    }
    // The library's getters return 0 for an absent attribute, and 0 is not printed.
    let nonzero = [
        (&b"mark"[..], p.mark),
        (b"indev", p.indev),
        (b"outdev", p.outdev),
        (b"physindev", p.physindev),
        (b"physoutdev", p.physoutdev),
    ];
    for (name, v) in nonzero {
        if let Some(v) = v.filter(|&v| v != 0) {
            push_tag_u32(out, name, v);
        }
    }
    if let Some(id) = ctid(msg, p) {
        push_tag_u32(out, b"ctid", id);
    }
    if let Some(pl) = p.payload {
        out.extend_from_slice(b"<payload>");
        push_hex(out, bytes(pl));
        out.extend_from_slice(b"</payload>");
    }
    out.extend_from_slice(b"</log>");
}

/// Where the document goes.
#[derive(Clone, Debug)]
enum Target {
    /// Time-stamped files in this directory.
    Dir(String),
    /// Standard output.
    Stdout,
}

/// A time-stamped XML file (or standard output): the header when opened,
/// the closing tag when closed.
struct XmlTransport {
    target: Target,
    infix: &'static str,
    root: &'static str,
    desc: String,
    file: Option<File>,
}

impl XmlTransport {
    fn new(target: Target, infix: &'static str, root: &'static str) -> Self {
        let desc = match &target {
            Target::Dir(d) => format!("XML file in {d}"),
            Target::Stdout => "standard output".into(),
        };
        XmlTransport {
            target,
            infix,
            root,
            desc,
            file: None,
        }
    }

    /// Opens a new document and writes its header.
    fn create(&mut self) -> io::Result<File> {
        let mut f = match &self.target {
            Target::Stdout => {
                // A duplicate, so closing the document never closes fd 1.
                // SAFETY: dup of fd 1; the new fd is owned by the File.
                let fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `fd` is a fresh descriptor nothing else owns.
                File::from(unsafe { OwnedFd::from_raw_fd(fd) })
            }
            Target::Dir(dir) => {
                let tm = local_tm(now().0);
                // ulogd joins with "%s/%s", so the default directory gives "//".
                let path = format!(
                    "{dir}/ulogd-{}-{:02}{:02}{:04}-{:02}{:02}{:02}.xml",
                    self.infix,
                    tm.tm_mday,
                    tm.tm_mon + 1,
                    1900 + tm.tm_year,
                    tm.tm_hour,
                    tm.tm_min,
                    tm.tm_sec
                );
                self.desc = format!("XML file {path}");
                OpenOptions::new().append(true).create(true).open(&path)?
            }
        };
        let mut head = DECLARATION.to_vec();
        head.extend_from_slice(format!("<{}>\n", self.root).as_bytes());
        f.write_all(&head)?;
        Ok(f)
    }

    fn finish(&self, mut f: File) {
        // Best effort: after a failed write the closing tag may fail too.
        let _ = f.write_all(format!("</{}>\n", self.root).as_bytes());
    }
}

impl Transport for XmlTransport {
    fn describe(&self) -> &str {
        &self.desc
    }

    fn is_open(&self) -> bool {
        self.file.is_some()
    }

    fn open(&mut self) -> io::Result<()> {
        let f = self.create()?;
        if let Some(old) = self.file.replace(f) {
            self.finish(old);
        }
        Ok(())
    }

    fn send(&mut self, batch: &Batch, from: usize, _: &DeliveryStats) -> Result<(), SendError> {
        let Some(f) = self.file.as_mut() else {
            return Err(SendError {
                next: from,
                error: io::Error::new(io::ErrorKind::NotConnected, "file not open"),
            });
        };
        write_records(f, batch, from).map_err(|(e, torn)| {
            if torn > 0 && matches!(self.target, Target::Dir(_)) {
                // Cut a partly written element (disk full), so that the
                // closing tag and the resent element do not follow a fragment.
                if let Ok(meta) = f.metadata() {
                    let _ = f.set_len(meta.len().saturating_sub(torn as u64));
                }
            }
            e
        })
    }

    fn close(&mut self) {
        if let Some(f) = self.file.take() {
            self.finish(f);
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        match self.target {
            // One stream: nothing to move on to.
            Target::Stdout => Ok(()),
            // The new file first, so a failure keeps the old one open.
            Target::Dir(_) => self.open(),
        }
    }
}

#[cfg(test)]
mod tests;
