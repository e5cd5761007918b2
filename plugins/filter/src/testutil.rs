//! Test helper: builds a filter and binds its keys the way the core does.

use rulogd_plugin::{
    Binding, BuildCtx, Builder, Filter, Options, PluginInfo, Record, Registration, SharedRegistry,
    Slot, Span, Value, Verdict,
};

/// Slots left unused between inputs and outputs, so an off-by-some output
/// index lands on a slot the assertions notice.
const GAP: Slot = 3;

/// Bytes put in the record's buffer before the packet, so raw spans must
/// carry the packet's offset to be right.
pub(crate) const PKT_OFFSET: usize = 7;

/// One filter instance, bound to a record of its own.
pub(crate) struct Harness {
    pub(crate) rec: Record,
    pub(crate) filter: Box<dyn Filter>,
    info: &'static PluginInfo,
    out_base: Slot,
}

impl Harness {
    /// Builds `reg` with default options; every input has a producer (slot
    /// `i` for input `i`) and every output is read downstream.
    pub(crate) fn new(reg: Registration) -> Self {
        Self::with(reg, |_| true, |_| true)
    }

    /// Like [`Harness::new`], choosing which inputs have a producer and which
    /// outputs are read.
    pub(crate) fn with(
        reg: Registration,
        provided: impl Fn(&str) -> bool,
        active: impl Fn(&str) -> bool,
    ) -> Self {
        Self::with_options(reg, &[], provided, active)
    }

    /// Like [`Harness::with`], with options set as a config section would.
    pub(crate) fn with_options(
        reg: Registration,
        opts: &[(&str, &str)],
        provided: impl Fn(&str) -> bool,
        active: impl Fn(&str) -> bool,
    ) -> Self {
        let info = reg.info;
        let mut options = Options::defaults(info.options).expect("default options");
        for (k, v) in opts {
            let def = info.options.iter().find(|d| d.name == *k).expect("option");
            options.set(def, v, 1).expect("option value");
            let val = options.get(k).expect("set").clone();
            def.validate(&val, &options).expect("valid option");
        }
        let shared = SharedRegistry::default();
        let ctx = BuildCtx {
            instance: "test",
            info,
            options: &options,
            shared: &shared,
        };
        let Builder::Filter(build) = reg.builder else {
            panic!("{} is not a filter", info.name);
        };
        let mut filter = build(&ctx).expect("build");
        let n_in = info.input_keys.len() as Slot;
        let out_base = n_in + GAP;
        let binding = Binding {
            instance: "test",
            input_keys: info.input_keys,
            inputs: info
                .input_keys
                .iter()
                .enumerate()
                .map(|(i, k)| provided(&k.name).then_some(i as Slot))
                .collect(),
            upstream: &[],
            output_base: out_base,
            active: info.output_keys.iter().map(|k| active(&k.name)).collect(),
        };
        filter.bind(&binding).expect("bind");
        let rec = Record::with_slots(out_base as usize + info.output_keys.len());
        Harness {
            rec,
            filter,
            info,
            out_base,
        }
    }

    /// Like [`Harness::new`], with `oob.family` and `oob.protocol` set
    /// where given (the address converters read them).
    pub(crate) fn with_family(
        reg: Registration,
        family: Option<u8>,
        protocol: Option<u16>,
    ) -> Self {
        let mut h = Self::new(reg);
        if let Some(f) = family {
            h.set("oob.family", Value::U8(f));
        }
        if let Some(p) = protocol {
            h.set("oob.protocol", Value::U16(p));
        }
        h
    }

    /// Output `name` as UTF-8 text; panics when it is unset or not text.
    pub(crate) fn out_text(&self, name: &str) -> String {
        let b = self
            .out_bytes(name)
            .unwrap_or_else(|| panic!("{name} unset"));
        String::from_utf8(b.to_vec()).expect("UTF-8 text")
    }

    fn input_slot(&self, name: &str) -> Slot {
        let i = self.info.input_keys.iter().position(|k| k.name == name);
        i.unwrap_or_else(|| panic!("no input key {name}")) as Slot
    }

    /// Sets an input key's value, as its upstream producer would.
    pub(crate) fn set(&mut self, name: &str, v: Value) {
        let s = self.input_slot(name);
        self.rec.set(s, v);
    }

    /// Puts `pkt` in the record's buffer (after [`PKT_OFFSET`] filler bytes)
    /// and sets `raw.pkt` and `raw.pktlen` as NFLOG does.
    pub(crate) fn set_packet(&mut self, pkt: &[u8]) {
        let mut buf = vec![0xee; PKT_OFFSET];
        buf.extend_from_slice(pkt);
        self.rec.set_buf(buf.into());
        self.set("raw.pkt", Value::Raw(Span::new(PKT_OFFSET, pkt.len())));
        self.set("raw.pktlen", Value::U32(pkt.len() as u32));
    }

    /// Runs the filter once.
    pub(crate) fn run(&mut self) -> Verdict {
        self.filter.process(&mut self.rec)
    }

    /// Invalidates every slot, as the core does between events.
    pub(crate) fn clear(&mut self) {
        self.rec.clear();
    }

    /// The value of the output key `name`, if valid.
    pub(crate) fn out(&self, name: &str) -> Option<&Value> {
        let i = self.info.output_keys.iter().position(|k| k.name == name);
        let i = i.unwrap_or_else(|| panic!("no output key {name}"));
        self.rec.get(self.out_base + i as Slot)
    }

    /// The bytes of a string or raw output.
    pub(crate) fn out_bytes(&self, name: &str) -> Option<&[u8]> {
        self.out(name).and_then(|v| self.rec.bytes_of(v))
    }

    /// An integer output widened to u64.
    pub(crate) fn out_u64(&self, name: &str) -> Option<u64> {
        self.out(name).and_then(Value::as_u64)
    }

    /// Names of every valid output key, in key order.
    pub(crate) fn valid_outputs(&self) -> Vec<&str> {
        self.info
            .output_keys
            .iter()
            .enumerate()
            .filter(|(i, _)| self.rec.is_valid(self.out_base + *i as Slot))
            .map(|(_, k)| &*k.name)
            .collect()
    }

    /// Asserts that no slot outside this filter's outputs and inputs holds a
    /// value (the gap between them stays untouched).
    pub(crate) fn assert_gap_untouched(&self) {
        let n_in = self.info.input_keys.len() as Slot;
        for s in n_in..self.out_base {
            assert!(!self.rec.is_valid(s), "filter wrote slot {s} in the gap");
        }
    }
}
