//! Test helper: builds an output with options, binds it to a list of
//! upstream keys the way the core does, and stops its writer.

use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Builder, KeyDef, KeyType, Options, Output, Record, Registration,
    SharedRegistry, Slot, UpstreamKey, Value,
};
use std::borrow::Cow;

/// One output instance fed from upstream keys at slots `0..n`.
pub(crate) struct Harness {
    pub(crate) out: Option<Box<dyn Output>>,
    pub(crate) rec: Record,
    pub(crate) shared: SharedRegistry,
    names: Vec<String>,
}

/// Options for `reg` with `opts` (name, text) applied over the defaults.
pub(crate) fn options(reg: Registration, opts: &[(&str, &str)]) -> Options {
    let info = reg.info;
    let mut o = Options::defaults(info.options).expect("defaults");
    for (name, text) in opts {
        let def = info
            .options
            .iter()
            .find(|d| d.name == *name)
            .unwrap_or_else(|| panic!("{} has no option {name}", info.name));
        o.set(def, text, 1).expect("option value");
    }
    o
}

/// Builds `reg`; the error if building fails.
pub(crate) fn try_build(
    reg: Registration,
    opts: &[(&str, &str)],
    shared: &SharedRegistry,
) -> Result<Box<dyn Output>, BuildError> {
    let options = options(reg, opts);
    let ctx = BuildCtx {
        instance: "t1",
        info: reg.info,
        options: &options,
        shared,
    };
    let Builder::Output(build) = reg.builder else {
        panic!("{} is not an output", reg.info.name);
    };
    build(&ctx)
}

/// Binds `out` to upstream keys `keys` (name, type) at slots `0..`.
pub(crate) fn try_bind(
    out: &mut dyn Output,
    reg: Registration,
    keys: &[(&'static str, KeyType)],
) -> Result<(), BuildError> {
    // Every copy of a name reads the nearest (last) producer's slot.
    let upstream: Vec<UpstreamKey> = keys
        .iter()
        .map(|(n, t)| UpstreamKey {
            def: KeyDef::new(n, *t),
            slot: slot_of(keys, n),
            producer: "up".into(),
        })
        .collect();
    let input_keys: Cow<'static, [KeyDef]> = out
        .input_keys()
        .unwrap_or(Cow::Borrowed(reg.info.input_keys));
    let inputs = input_keys
        .iter()
        .map(|k| {
            keys.iter()
                .any(|(n, _)| *n == k.name)
                .then(|| slot_of(keys, &k.name))
        })
        .collect();
    out.bind(&Binding {
        instance: "t1",
        input_keys: &input_keys,
        inputs,
        upstream: &upstream,
        output_base: keys.len() as Slot,
        active: Vec::new(),
    })
}

fn slot_of(keys: &[(&'static str, KeyType)], name: &str) -> Slot {
    keys.iter().rposition(|(n, _)| *n == name).expect("key") as Slot
}

impl Harness {
    /// Builds and binds `reg`; panics on errors.
    pub(crate) fn new(
        reg: Registration,
        opts: &[(&str, &str)],
        keys: &[(&'static str, KeyType)],
    ) -> Harness {
        let shared = SharedRegistry::default();
        let mut out = try_build(reg, opts, &shared).expect("build");
        try_bind(out.as_mut(), reg, keys).expect("bind");
        Harness {
            out: Some(out),
            rec: Record::with_slots(keys.len()),
            shared,
            names: keys.iter().map(|(n, _)| n.to_string()).collect(),
        }
    }

    /// Sets the key called `name` (its nearest producer's slot).
    pub(crate) fn set(&mut self, name: &str, v: Value) -> &mut Self {
        let i = self.names.iter().rposition(|n| n == name).expect("key");
        self.rec.set(i as Slot, v);
        self
    }

    /// Writes the current record, then clears it.
    pub(crate) fn write(&mut self) {
        let out = self.out.as_mut().expect("running");
        out.write(&self.rec).expect("write");
        self.rec.clear();
    }

    /// SIGHUP, as the core sends it: to every writer, in band.
    pub(crate) fn hup(&mut self) {
        self.out.as_mut().expect("running").flush().expect("flush");
        for s in self.shared.services() {
            s.reopen();
        }
    }

    /// Drops the instance (handing over its batch) and stops every writer.
    pub(crate) fn stop(&mut self) {
        self.out = None;
        for s in self.shared.services() {
            s.shutdown();
        }
    }
}

/// A fresh empty directory under the system temp dir.
pub(crate) fn temp_dir(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("rulogd-out-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A string value.
pub(crate) fn text(s: &str) -> Value {
    Value::text(s.as_bytes())
}
