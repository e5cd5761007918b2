//! XML element rendering, checked against libnetfilter_log's own
//! `nflog_snprintf_xml` (loaded with dlopen when installed), and the
//! document life cycle: header, closing tag, a new file on SIGHUP.

use super::*;
use crate::testutil::{temp_dir, try_bind, try_build, Harness};
use rulogd_netlink::nflog::{attr, MSG_PACKET};
use rulogd_netlink::{finish_msg, put_attr, start_msg};
use rulogd_plugin::{SharedRegistry, Span, Value};

/// An NFLOG packet message with these attributes.
fn msg(family: u8, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut v = Vec::new();
    let start = start_msg(&mut v, MSG_PACKET, 0, 0);
    v.extend_from_slice(&[family, 0, 0, 7]);
    for (k, p) in attrs {
        put_attr(&mut v, *k, p);
    }
    finish_msg(&mut v, start);
    v
}

fn hdr(proto: u16, hook: u8) -> (u16, Vec<u8>) {
    let mut b = proto.to_be_bytes().to_vec();
    b.extend_from_slice(&[hook, 0]);
    (attr::PACKET_HDR, b)
}

fn be32(kind: u16, v: u32) -> (u16, Vec<u8>) {
    (kind, v.to_be_bytes().to_vec())
}

fn hwaddr(a: &[u8]) -> (u16, Vec<u8>) {
    let mut b = (a.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(&[0, 0]);
    let mut addr = a.to_vec();
    addr.resize(8, 0);
    b.extend_from_slice(&addr);
    (attr::HWADDR, b)
}

/// NFULA_CT holding CTA_ID (and another attribute before it).
fn ct(id: u32) -> (u16, Vec<u8>) {
    let mut b = Vec::new();
    put_attr(&mut b, 8, &5u32.to_be_bytes());
    put_attr(&mut b, CTA_ID, &id.to_be_bytes());
    (attr::CT | 0x8000, b)
}

fn samples() -> Vec<Vec<u8>> {
    let pkt: Vec<u8> = (0u8..=255).cycle().take(84).collect();
    vec![
        // A loopback output packet: no hardware address, prefix, payload.
        msg(
            2,
            &[
                hdr(0x0800, 3),
                (attr::PREFIX, b"OUT\0".to_vec()),
                be32(attr::IFINDEX_OUTDEV, 1),
                (attr::PAYLOAD, pkt.clone()),
            ],
        ),
        // Input over Ethernet, marked, IPv6, with conntrack.
        msg(
            10,
            &[
                hdr(0x86dd, 1),
                be32(attr::MARK, 0x2a),
                be32(attr::IFINDEX_INDEV, 7),
                hwaddr(&[2, 0, 0, 0, 0, 0xaa]),
                (attr::PAYLOAD, pkt[..40].to_vec()),
                ct(0xdead_beef),
                be32(attr::UID, 0),
            ],
        ),
        // A bridge packet with ports, mark 0 (not printed), empty prefix.
        msg(
            7,
            &[
                hdr(0x0806, 0),
                be32(attr::MARK, 0),
                (attr::PREFIX, b"\0".to_vec()),
                be32(attr::IFINDEX_INDEV, 3),
                be32(attr::IFINDEX_OUTDEV, 4),
                be32(attr::IFINDEX_PHYSINDEV, 5),
                be32(attr::IFINDEX_PHYSOUTDEV, 6),
                hwaddr(&[1, 2, 3, 4, 5, 6]),
            ],
        ),
        // Almost nothing.
        msg(2, &[]),
    ]
}

fn ours(m: &[u8]) -> String {
    let p = parse_packet(m).expect("parses");
    let mut out = Vec::new();
    render_log(&mut out, m, &p, b"");
    String::from_utf8(out).expect("ASCII")
}

/// `nflog_snprintf_xml(NFLOG_XML_ALL)` of libnetfilter_log.so.1, with the
/// `<when>` element (the current time) cut out; None without the library.
fn library(m: &[u8]) -> Option<String> {
    type Snprintf = unsafe extern "C" fn(*mut libc::c_char, usize, *mut *mut *mut u8, u32) -> i32;
    // SAFETY: dlopen/dlsym with valid C strings; the handle is never closed.
    let f: Snprintf = unsafe {
        let h = libc::dlopen(c"libnetfilter_log.so.1".as_ptr(), libc::RTLD_NOW);
        if h.is_null() {
            return None;
        }
        let s = libc::dlsym(h, c"nflog_snprintf_xml".as_ptr());
        if s.is_null() {
            return None;
        }
        std::mem::transmute::<*mut libc::c_void, Snprintf>(s)
    };
    // `struct nflog_data` is a pointer to the attribute table libnfnetlink
    // builds: slot `type - 1` points at that attribute's header.
    let mut buf = m.to_vec();
    let mut table: Vec<*mut u8> = vec![std::ptr::null_mut(); 32];
    let mut off = 20;
    while off + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & 0x7fff;
        if (1..=32).contains(&kind) {
            // SAFETY: `off` is inside `buf`.
            table[kind as usize - 1] = unsafe { buf.as_mut_ptr().add(off) };
        }
        off += (len + 3) & !3;
    }
    let mut data = table.as_mut_ptr();
    let mut out = vec![0 as libc::c_char; 8192];
    // SAFETY: the table and the message outlive the call; the buffer size is right.
    let n = unsafe { f(out.as_mut_ptr(), out.len(), &mut data, !0) };
    assert!(n > 0 && (n as usize) < out.len());
    let s: String = out[..n as usize].iter().map(|&c| c as u8 as char).collect();
    let a = s.find("<when>").expect("when");
    let b = s.find("</when>").expect("/when") + "</when>".len();
    Some(format!("{}{}", &s[..a], &s[b..]))
}

#[test]
fn log_elements_match_libnetfilter_log() {
    let mut checked = 0;
    for m in samples() {
        let Some(want) = library(&m) else {
            eprintln!("libnetfilter_log.so.1 not installed; comparing with the known form only");
            break;
        };
        assert_eq!(ours(&m), want);
        checked += 1;
    }
    let s = samples();
    assert_eq!(
        ours(&s[1]),
        format!(
            "<log><hook>1</hook><hw><proto>86dd</proto><src>0200000000aa</src></hw>\
             <mark>42</mark><indev>7</indev><ctid>3735928559</ctid><payload>{}</payload></log>",
            (0u8..40).map(|b| format!("{b:02x}")).collect::<String>()
        )
    );
    eprintln!("{checked} elements compared with libnetfilter_log");
}

#[test]
fn when_is_local_time_in_the_library_form() {
    let w = String::from_utf8(when_element(0)).unwrap();
    let tm = local_tm(0);
    let want = format!(
        "<when><hour>{}</hour><min>{:02}</min><sec>{:02}</sec><wday>{}</wday><day>{}</day>\
         <month>{}</month><year>{}</year></when>",
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_wday + 1,
        tm.tm_mday,
        tm.tm_mon + 1,
        tm.tm_year + 1900
    );
    assert_eq!(w, want);
}

#[test]
fn prefix_markup_is_escaped() {
    let m = msg(2, &[(attr::PREFIX, b"a<b>&c\0".to_vec())]);
    assert_eq!(ours(&m), "<log><prefix>a&lt;b&gt;&amp;c</prefix></log>");
}

fn xml_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn a_document_per_file_closed_on_stop_and_on_sighup() {
    let dir = temp_dir("xml");
    let d = dir.to_str().unwrap();
    let keys = [
        ("raw", KeyType::Raw),
        ("ct", KeyType::Raw),
        ("oob.prefix", KeyType::String),
    ];
    let mut h = Harness::new(REGISTRATION, &[("directory", d), ("sync", "1")], &keys);
    let files = xml_files(&dir);
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with("ulogd-pkt-") && name.ends_with(".xml") && name.len() == 29,
        "{name}"
    );
    let m = &samples()[0];
    h.rec.set_buf(bytes::Bytes::copy_from_slice(m));
    h.set("raw", Value::Raw(Span::new(0, m.len())));
    h.write();
    // A new second, so a new file name.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    h.hup();
    std::thread::sleep(std::time::Duration::from_millis(100));
    h.set("raw", Value::Raw(Span::new(0, m.len())));
    h.write();
    h.stop();
    let files = xml_files(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], "<?xml version=\"1.0\" encoding=\"utf-8\"?>");
        assert_eq!(lines[1], "<packet>");
        assert!(lines[2].starts_with("<log><when><hour>"), "{}", lines[2]);
        assert!(lines[2].ends_with("</payload></log>"), "{}", lines[2]);
        assert_eq!(lines[3], "</packet>");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn stacks_without_nflog_packets_are_refused() {
    let dir = temp_dir("xml-bind");
    let d = dir.to_str().unwrap();
    for (keys, ok) in [
        (&[("ct", KeyType::Raw)][..], false),
        (&[("sum", KeyType::Raw)][..], false),
        (&[("raw", KeyType::Raw), ("sum", KeyType::Raw)][..], false),
        (&[("oob.prefix", KeyType::String)][..], false),
        (&[("raw", KeyType::Raw), ("ct", KeyType::Raw)][..], true),
    ] {
        let shared = SharedRegistry::default();
        let mut out = try_build(REGISTRATION, &[("directory", d)], &shared).expect("build");
        let r = try_bind(out.as_mut(), REGISTRATION, keys);
        assert_eq!(r.is_ok(), ok, "{keys:?}: {:?}", r.err());
        drop(out);
        for s in shared.services() {
            rulogd_plugin::Service::shutdown(s.as_ref());
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_directory_fails_the_build() {
    let shared = SharedRegistry::default();
    let e = try_build(
        REGISTRATION,
        &[("directory", "/nonexistent-xml-dir")],
        &shared,
    )
    .err()
    .expect("fails");
    assert!(
        e.to_string().contains("/nonexistent-xml-dir/ulogd-pkt-"),
        "{e}"
    );
}
