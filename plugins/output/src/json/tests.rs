//! Rendering tests at the plan level (no I/O, no time zone): escaping,
//! repeated names, boolean_label, eventv1, types. Expected strings were
//! checked against jansson 2.14's `json_dumps(obj, 0)`.

use super::render::{Plan, PlanOptions, RenderCtx};
use super::{push_string, JsonConfig, Mode, TsFormat};
use rulogd_delivery::WhenFull;
use rulogd_plugin::{KeyDef, KeyType, Options, Record, Slot, UpstreamKey, Value};
use std::sync::Arc;

fn key(name: &'static str, ty: KeyType, slot: Slot) -> UpstreamKey {
    UpstreamKey {
        def: KeyDef::new(name, ty),
        slot,
        producer: "p".into(),
    }
}

fn cim(name: &'static str, cim: &'static str, ty: KeyType, slot: Slot) -> UpstreamKey {
    UpstreamKey {
        def: KeyDef::new(name, ty).cim(cim),
        slot,
        producer: "p".into(),
    }
}

const BARE: PlanOptions = PlanOptions {
    eventv1: false,
    timestamp: false,
    boolean_label: false,
};

fn render(up: &[UpstreamKey], o: PlanOptions, rec: &Record) -> String {
    let plan = Plan::new(up, o);
    let mut out = Vec::new();
    let ctx = RenderCtx {
        timestamp: Some(b"T"),
        ts_quoted: true,
        device: b"\"Netfilter\"",
    };
    plan.render(rec, &ctx, &mut out);
    String::from_utf8(out).expect("renders UTF-8")
}

fn string_of(b: &[u8]) -> String {
    let mut out = Vec::new();
    push_string(&mut out, b);
    String::from_utf8(out).expect("UTF-8")
}

#[test]
fn escaping_matches_jansson() {
    let all: Vec<u8> = (1u8..0x80).collect();
    // jansson 2.14: named escapes for \b \t \n \f \r, upper-case \u00XX for
    // other controls, `/` and DEL as is.
    let want = concat!(
        r#""\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000B\f\r\u000E\u000F"#,
        r#"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001A\u001B"#,
        r##"\u001C\u001D\u001E\u001F !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"##,
        "\u{7f}\""
    );
    assert_eq!(string_of(&all), want);
    assert_eq!(
        string_of("héllo € 😀 / \u{7f}".as_bytes()),
        "\"héllo € 😀 / \u{7f}\""
    );
    assert_eq!(string_of(br#"a"b\c"#), r#""a\"b\\c""#);
    assert_eq!(string_of(b""), r#""""#);
}

#[test]
fn strings_that_are_not_utf8_are_omitted() {
    let up = [
        key("a", KeyType::String, 0),
        key("b", KeyType::String, 1),
        key("c", KeyType::String, 2),
        key("d", KeyType::String, 3),
        key("e", KeyType::String, 4),
    ];
    let mut rec = Record::with_slots(5);
    rec.set(0, Value::text(b"ok"));
    rec.set(1, Value::text(b"\xff"));
    rec.set(2, Value::text(b"\xed\xa0\x80")); // a surrogate
    rec.set(3, Value::text(b"\xc0\x80")); // overlong NUL
                                          // A C string stops at NUL: what follows is not seen (nor checked).
    rec.set(4, Value::Shared(Arc::from(&b"cut\0\xff"[..])));
    assert_eq!(
        render(&up, BARE, &rec),
        r#"{"dvc": "Netfilter", "a": "ok", "e": "cut"}"#
    );
}

#[test]
fn string_values_from_every_representation() {
    let up = [
        key("span", KeyType::String, 0),
        key("inline", KeyType::String, 1),
        key("shared", KeyType::String, 2),
    ];
    let mut rec = Record::with_slots(3);
    rec.set_buf(bytes::Bytes::from_static(b"xxeth0yy"));
    rec.set(0, Value::StrSpan(rulogd_plugin::Span::new(2, 4)));
    rec.set(1, Value::text(b"in\tline"));
    rec.set(2, Value::Shared(Arc::from(vec![b'q'; 60])));
    let want = format!(
        r#"{{"dvc": "Netfilter", "span": "eth0", "inline": "in\tline", "shared": "{}"}}"#,
        "q".repeat(60)
    );
    assert_eq!(render(&up, BARE, &rec), want);
}

#[test]
fn repeated_names_keep_first_position_and_last_value() {
    let up = [
        cim("ip.saddr.str", "src_ip", KeyType::String, 0),
        key("mid", KeyType::U8, 1),
        cim("orig.ip.saddr.str", "src_ip", KeyType::String, 2),
        // Two copies of one name bound to the same nearest producer.
        key("oob.protocol", KeyType::U16, 3),
        key("oob.protocol", KeyType::U16, 3),
    ];
    let mut rec = Record::with_slots(4);
    rec.set(0, Value::text(b"10.0.0.1"));
    rec.set(1, Value::U8(7));
    rec.set(2, Value::text(b"10.0.0.2"));
    rec.set(3, Value::U16(2048));
    assert_eq!(
        render(&up, BARE, &rec),
        r#"{"dvc": "Netfilter", "src_ip": "10.0.0.2", "mid": 7, "oob.protocol": 2048}"#
    );
    // The later one invalid: the first value stays.
    rec.invalidate(2, 1);
    assert_eq!(
        render(&up, BARE, &rec),
        r#"{"dvc": "Netfilter", "src_ip": "10.0.0.1", "mid": 7, "oob.protocol": 2048}"#
    );
    // The first one invalid: jansson inserts it where the later one sets it.
    rec.invalidate(0, 1);
    rec.set(2, Value::text(b"10.0.0.2"));
    assert_eq!(
        render(&up, BARE, &rec),
        r#"{"dvc": "Netfilter", "mid": 7, "src_ip": "10.0.0.2", "oob.protocol": 2048}"#
    );
    // A later value that is not UTF-8 does not replace the earlier one.
    rec.set(0, Value::text(b"10.0.0.1"));
    rec.set(2, Value::text(b"\xff"));
    assert_eq!(
        render(&up, BARE, &rec),
        r#"{"dvc": "Netfilter", "src_ip": "10.0.0.1", "mid": 7, "oob.protocol": 2048}"#
    );
}

#[test]
fn a_key_named_like_a_header_field_overwrites_it_in_place() {
    let up = [key("x", KeyType::U8, 0), key("dvc", KeyType::String, 1)];
    let mut rec = Record::with_slots(2);
    rec.set(0, Value::U8(1));
    rec.set(1, Value::text(b"other"));
    assert_eq!(render(&up, BARE, &rec), r#"{"dvc": "other", "x": 1}"#);
}

#[test]
fn boolean_label_becomes_action_at_its_position() {
    let up = [
        key("a", KeyType::U8, 0),
        key("raw.label", KeyType::U8, 1),
        key("b", KeyType::U8, 2),
    ];
    let mut rec = Record::with_slots(3);
    rec.set(0, Value::U8(1));
    rec.set(1, Value::U8(3));
    rec.set(2, Value::U8(2));
    let on = PlanOptions {
        boolean_label: true,
        ..BARE
    };
    assert_eq!(
        render(&up, on, &rec),
        r#"{"dvc": "Netfilter", "a": 1, "action": "allowed", "b": 2}"#
    );
    rec.set(1, Value::U8(0));
    assert_eq!(
        render(&up, on, &rec),
        r#"{"dvc": "Netfilter", "a": 1, "action": "blocked", "b": 2}"#
    );
    assert_eq!(
        render(&up, BARE, &rec),
        r#"{"dvc": "Netfilter", "a": 1, "raw.label": 0, "b": 2}"#
    );
    // ulogd only converts a UINT8 raw.label.
    let up16 = [key("raw.label", KeyType::U16, 1)];
    assert_eq!(
        render(&up16, on, &rec),
        r#"{"dvc": "Netfilter", "raw.label": 0}"#
    );
}

#[test]
fn eventv1_and_timestamp_header() {
    let up = [key("n", KeyType::U8, 0)];
    let mut rec = Record::with_slots(1);
    rec.set(0, Value::U8(9));
    let v1 = PlanOptions {
        eventv1: true,
        timestamp: true,
        boolean_label: false,
    };
    assert_eq!(
        render(&up, v1, &rec),
        r#"{"@version": 1, "@timestamp": "T", "dvc": "Netfilter", "n": 9}"#
    );
    let plain = PlanOptions {
        timestamp: true,
        ..BARE
    };
    assert_eq!(
        render(&up, plain, &rec),
        r#"{"timestamp": "T", "dvc": "Netfilter", "n": 9}"#
    );
    let v1_no_ts = PlanOptions {
        eventv1: true,
        ..BARE
    };
    assert_eq!(
        render(&up, v1_no_ts, &rec),
        r#"{"@version": 1, "dvc": "Netfilter", "n": 9}"#
    );
}

#[test]
fn value_types() {
    let up = [
        key("i8", KeyType::I8, 0),
        key("i16", KeyType::I16, 1),
        key("i32", KeyType::I32, 2),
        key("i64", KeyType::I64, 3),
        key("u64", KeyType::U64, 4),
        key("bool", KeyType::Bool, 5),
        key("ip", KeyType::IpAddr, 6),
        key("raw", KeyType::Raw, 7),
        key("rawstr", KeyType::RawStr, 8),
        key("u32", KeyType::U32, 9),
        key("u64small", KeyType::U64, 10),
    ];
    let mut rec = Record::with_slots(11);
    rec.set(0, Value::I8(-5));
    rec.set(1, Value::I16(-300));
    rec.set(2, Value::I32(i32::MIN));
    rec.set(3, Value::I64(-1_234_567_890_123));
    rec.set(4, Value::U64(u64::MAX));
    rec.set(5, Value::Bool(true));
    rec.set(6, Value::Ipv4([1, 2, 3, 4].into()));
    rec.set(7, Value::RawOwned(Arc::from(&b"ab"[..])));
    rec.set(8, Value::text(b"0x00"));
    rec.set(9, Value::U32(u32::MAX));
    rec.set(10, Value::U64(42));
    assert_eq!(
        render(&up, BARE, &rec),
        concat!(
            r#"{"dvc": "Netfilter", "i8": -5, "i16": -300, "i32": -2147483648, "#,
            r#""i64": -1234567890123, "u64": -1, "bool": 1, "u32": 4294967295, "u64small": 42}"#
        )
    );
}

#[test]
fn invalid_slots_are_left_out() {
    let up = [key("a", KeyType::U8, 0), key("b", KeyType::String, 1)];
    let rec = Record::with_slots(2);
    assert_eq!(render(&up, BARE, &rec), r#"{"dvc": "Netfilter"}"#);
}

fn opts(pairs: &[(&str, &str)]) -> Options {
    let mut o = Options::defaults(super::INFO.options).expect("defaults");
    for (k, v) in pairs {
        let def = super::INFO
            .options
            .iter()
            .find(|d| d.name == *k)
            .expect("known option");
        o.set(def, v, 1).expect("value");
    }
    o
}

#[test]
fn options_defaults_and_validation() {
    let c = JsonConfig::from_options(&opts(&[])).expect("defaults are valid");
    assert_eq!(c.file, "/var/log/ulogd.json");
    assert_eq!(c.mode, Mode::File);
    assert_eq!(c.when_full, WhenFull::Block);
    assert_eq!(c.timestamp_format, TsFormat::Ulogd);
    assert!(c.timestamp && !c.sync && !c.eventv1 && !c.boolean_label);
    assert_eq!((c.host.as_str(), c.port.as_str()), ("127.0.0.1", "12345"));
    assert_eq!(c.device, "Netfilter");
    assert_eq!(c.queue_size, 64);
    assert_eq!(c.max_pending, 64 << 20);

    let c = JsonConfig::from_options(&opts(&[("mode", "TCP")])).expect("case-insensitive");
    assert_eq!((c.mode, c.when_full), (Mode::Tcp, WhenFull::Drop));
    let c = JsonConfig::from_options(&opts(&[("mode", "Udp"), ("when_full", "block")]))
        .expect("explicit policy");
    assert_eq!((c.mode, c.when_full), (Mode::Udp, WhenFull::Block));

    let err = |pairs: &[(&str, &str)]| match JsonConfig::from_options(&opts(pairs)) {
        Ok(_) => panic!("{pairs:?} accepted"),
        Err(e) => e.to_string(),
    };
    let e = err(&[("mode", "syslog")]);
    assert!(e.contains("file, tcp, udp, unix"), "{e}");
    assert!(err(&[("timestamp_format", "iso")]).contains("rfc3339"));
    assert!(err(&[("when_full", "spool")]).contains("block, drop"));
    assert!(err(&[("queue_size", "0")]).contains("queue_size"));
    assert!(err(&[("mode", "unix"), ("file", "")]).contains("socket path"));
    let long = "x".repeat(108);
    assert!(err(&[("mode", "unix"), ("file", &long)]).contains("longer"));
    assert!(err(&[("mode", "tcp"), ("host", "")]).contains("host"));
    for d in super::INFO.options {
        assert!(!d.help.is_empty() && !d.help.contains('\n'), "{}", d.name);
    }
}

/// A small xorshift generator, so the randomized test needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

const NAMES: &[&str] = &[
    "a",
    "ip.saddr",
    "oob.prefix",
    "raw.label",
    "dvc",
    "timestamp",
    "src_ip",
    "we\"ird\\name",
    "tab\there",
    "a.name.long.enough.to.need.the.slow.copy",
    "exactly.twenty.six.bytes.x",
    "twenty.seven.bytes.exactlyy",
    "héllo",
];

const TYPES: &[KeyType] = &[
    KeyType::U8,
    KeyType::U16,
    KeyType::U32,
    KeyType::U64,
    KeyType::I8,
    KeyType::I64,
    KeyType::Bool,
    KeyType::String,
    KeyType::IpAddr,
    KeyType::Raw,
];

const STRINGS: &[&[u8]] = &[
    b"",
    b"lo",
    b"127.0.0.1",
    b"with \"quote\"",
    b"back\\slash",
    b"nul\0after",
    b"\0",
    b"ctl\x01\x1f",
    b"caf\xc3\xa9",
    b"\xff\xfe",
    b"\xed\xa0\x80",
    b"del\x7f/",
    b"tab\tnl\n",
    b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-long",
];

fn random_value(r: &mut Rng) -> Value {
    let s = *r.pick(STRINGS);
    match r.below(16) {
        0 => Value::None,
        1 => Value::I8(r.next() as i8),
        2 => Value::I16(r.next() as i16),
        3 => Value::I32(r.next() as i32),
        4 => Value::I64((r.next() as i64) >> r.below(64)),
        5 => Value::U8(r.next() as u8),
        6 => Value::U16(r.next() as u16),
        7 => Value::U32(r.next() as u32),
        8 => Value::U64(r.next() >> r.below(64)),
        9 => Value::Bool(r.next() & 1 == 1),
        10 => Value::Ipv4((r.next() as u32).into()),
        11 => Value::text(s),
        12 => Value::Shared(Arc::from(s)),
        13 => Value::StrSpan(rulogd_plugin::Span::new(
            r.below(24) as usize,
            r.below(24) as usize,
        )),
        14 => Value::Raw(rulogd_plugin::Span::new(0, 4)),
        _ => Value::RawOwned(Arc::from(s)),
    }
}

/// The rewritten renderer against the one it replaced, on random stacks
/// (repeated names, long and escaped names, every value representation,
/// invalid slots) and every option combination.
#[test]
fn render_matches_the_previous_renderer_on_random_records() {
    use super::render_ref;
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    for case in 0..3000 {
        let nkeys = 1 + r.below(12) as usize;
        // Half the stacks read slots in increasing order, half at random
        // (repeats, out of order: real stacks have both; a key two
        // instances produce is bound twice to the later one's slot).
        let increasing = case % 2 == 0;
        let slots: Vec<Slot> = if increasing {
            let mut next = r.below(3) as Slot;
            (0..nkeys)
                .map(|_| {
                    let s = next;
                    // Gaps, some across a 64-bit word of the bitset.
                    let span = if r.below(8) == 0 { 70 } else { 3 };
                    next += 1 + r.below(span) as Slot;
                    s
                })
                .collect()
        } else {
            let n = 1 + r.below(10);
            (0..nkeys).map(|_| r.below(n) as Slot).collect()
        };
        // Valid slots past the last key too.
        let nslots = slots.iter().max().map_or(0, |&m| m + 1) + r.below(70) as Slot;
        let up: Vec<UpstreamKey> = slots
            .iter()
            .map(|&slot| {
                let mut def =
                    KeyDef::new(NAMES[r.below(NAMES.len() as u64) as usize], *r.pick(TYPES));
                if r.below(4) == 0 {
                    def = def.cim(NAMES[r.below(NAMES.len() as u64) as usize]);
                }
                UpstreamKey {
                    def,
                    slot,
                    producer: "p".into(),
                }
            })
            .collect();
        let o = PlanOptions {
            eventv1: r.below(2) == 0,
            timestamp: r.below(2) == 0,
            boolean_label: r.below(2) == 0,
        };
        let (plan, old) = (Plan::new(&up, o), render_ref::Plan::new(&up, o));
        for _ in 0..8 {
            let mut rec = Record::with_slots(nslots as usize);
            rec.set_buf(bytes::Bytes::from_static(
                b"eth0\0x\"y\xff\xfeabcdefghijklmnopqrstuvwxyz",
            ));
            for slot in 0..nslots {
                if r.below(4) != 0 {
                    rec.set(slot, random_value(&mut r));
                }
            }
            let ts: Option<&[u8]> = if r.below(5) == 0 { None } else { Some(b"T") };
            let quoted = r.below(2) == 0;
            let mut a = b"prefix".to_vec();
            let mut b = a.clone();
            let ctx = RenderCtx {
                timestamp: ts,
                ts_quoted: quoted,
                device: b"\"dev\"",
            };
            plan.render(&rec, &ctx, &mut a);
            old.render(&rec, &ctx, &mut b);
            assert_eq!(
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b),
                "case {case}: {up:?}"
            );
            assert_eq!(a, b);
        }
    }
}

/// Beyond 64 repeated fields the renderer stops tracking them in its mask
/// and searches the earlier sources instead; both ways must agree.
#[test]
fn more_repeated_fields_than_the_mask_holds() {
    use super::render_ref;
    let names: Vec<&'static str> = (0..80)
        .map(|i| &*Box::leak(format!("f{i}").into_boxed_str()))
        .collect();
    let mut up = Vec::new();
    for (i, n) in names.iter().enumerate() {
        // Three sources per name, in two slots and one string.
        up.push(key(n, KeyType::U8, (3 * i) as Slot));
        up.push(key(n, KeyType::U16, (3 * i + 1) as Slot));
        up.push(key(n, KeyType::String, (3 * i + 2) as Slot));
    }
    let plan = Plan::new(&up, BARE);
    let old = render_ref::Plan::new(&up, BARE);
    let mut r = Rng(7);
    for _ in 0..200 {
        let mut rec = Record::with_slots(up.len());
        for slot in 0..up.len() {
            match r.below(4) {
                0 => rec.set(slot as Slot, Value::U8(r.next() as u8)),
                1 => rec.set(
                    slot as Slot,
                    Value::text(STRINGS[r.below(STRINGS.len() as u64) as usize]),
                ),
                _ => {}
            }
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let ctx = RenderCtx {
            timestamp: None,
            ts_quoted: true,
            device: b"\"d\"",
        };
        plan.render(&rec, &ctx, &mut a);
        old.render(&rec, &ctx, &mut b);
        assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
    }
}
