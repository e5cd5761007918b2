//! Helpers shared by the integration tests: temp dirs, building a JSON
//! instance from option pairs, and numbered records.

#![allow(dead_code)]

use rulogd_output::json;
use rulogd_plugin::{
    Binding, BuildCtx, KeyDef, KeyType, Options, Output, Record, Service, SharedRegistry, Slot,
    UpstreamKey, Value,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "rulogd-output-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Options for the JSON plugin with `pairs` set as config text.
pub fn options(pairs: &[(&str, &str)]) -> Options {
    let info = &json::INFO;
    let mut o = Options::defaults(info.options).expect("defaults");
    for (k, v) in pairs {
        let def = info
            .options
            .iter()
            .find(|d| d.name == *k)
            .unwrap_or_else(|| panic!("no option {k}"));
        o.set(def, v, 1).expect("option value");
    }
    o
}

/// Builds a JSON instance `id` in `reg`.
pub fn build(reg: &SharedRegistry, id: &str, pairs: &[(&str, &str)]) -> json::Json {
    let o = options(pairs);
    let ctx = BuildCtx {
        instance: id,
        info: &json::INFO,
        options: &o,
        shared: reg,
    };
    match json::Json::new(&ctx) {
        Ok(j) => j,
        Err(e) => panic!("build failed: {e}"),
    }
}

/// Binds `out` to upstream keys.
pub fn bind(out: &mut dyn Output, upstream: &[UpstreamKey]) {
    let b = Binding {
        instance: "test",
        input_keys: &[],
        inputs: Vec::new(),
        upstream,
        output_base: 0,
        active: Vec::new(),
    };
    out.bind(&b).expect("bind");
}

/// An upstream key at `slot`.
pub fn key(name: &'static str, ty: KeyType, slot: Slot) -> UpstreamKey {
    UpstreamKey {
        def: KeyDef::new(name, ty),
        slot,
        producer: "src".to_string(),
    }
}

/// Upstream keys `seq` (slot 0) and `pad` (slot 1), for numbered lines.
pub fn seq_keys() -> Vec<UpstreamKey> {
    vec![key("seq", KeyType::U32, 0), key("pad", KeyType::String, 1)]
}

/// A record numbered `n`, with `pad` bytes of padding.
pub fn seq_record(rec: &mut Record, n: u32, pad: usize) {
    rec.clear();
    rec.set(0, Value::U32(n));
    rec.set(1, Value::Shared(Arc::from(vec![b'x'; pad])));
}

/// Extracts `n` from a line containing `"seq": n`, checking the line is whole.
pub fn seq_of(line: &str) -> u32 {
    assert!(
        line.starts_with('{') && line.ends_with('}'),
        "torn line: {line:?}"
    );
    let i = line
        .find("\"seq\": ")
        .unwrap_or_else(|| panic!("no seq in {line:?}"));
    let rest = &line[i + 7..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().expect("seq number")
}

/// Shuts every service of `reg` down (writes everything queued).
pub fn shutdown(reg: &SharedRegistry) {
    for s in reg.services() {
        s.shutdown();
    }
}

/// The single service of `reg`.
pub fn service(reg: &SharedRegistry) -> Arc<dyn Service> {
    let s = reg.services();
    assert_eq!(s.len(), 1, "one writer per instance id");
    s[0].clone()
}

/// The value of counter `label` in the only stat set of `reg`.
pub fn counter(reg: &SharedRegistry, label: &str) -> u64 {
    let sets = reg.stats();
    sets[0]
        .snapshot()
        .into_iter()
        .find(|(l, _)| *l == label)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no counter {label}"))
}
