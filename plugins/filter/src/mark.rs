//! MARK: passes only records whose conntrack mark (or, without one, packet
//! mark) matches `mark` under `mask`; the others stop for this stack.

use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Filter, KeyDef, KeyType, OptionDef, Record, Slot, Verdict,
};

static OPTIONS: [OptionDef; 2] = [
    OptionDef::int(
        "mark",
        "0",
        "pass records whose mark, masked with `mask`, equals this",
    )
    .range(0, u32::MAX as i64),
    OptionDef::int(
        "mask",
        "-1",
        "bits of the mark that are compared (-1: all 32)",
    )
    .range(-1, u32::MAX as i64),
];

static INPUT_KEYS: [KeyDef; 2] = [
    KeyDef::new("ct.mark", KeyType::U32).optional(),
    KeyDef::new("oob.mark", KeyType::U32).optional(),
];

rulogd_plugin::plugin! {
    Filter "MARK" (build): "passes records whose ct.mark (else oob.mark) & mask == mark";
    options &OPTIONS;
    input &INPUT_KEYS;
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Filter>, BuildError> {
    // ulogd keeps both in a C int and compares them as 32-bit unsigned
    // values, so `-1`, `0xffffffff` and `4294967295` are the same mask.
    Ok(Box::new(Mark {
        mark: ctx.options.int("mark") as u32,
        mask: ctx.options.int("mask") as u32,
        ct_mark: None,
        oob_mark: None,
    }))
}

struct Mark {
    mark: u32,
    mask: u32,
    ct_mark: Option<Slot>,
    oob_mark: Option<Slot>,
}

impl Filter for Mark {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.ct_mark = b.input("ct.mark");
        self.oob_mark = b.input("oob.mark");
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        // The conntrack mark decides when there is one; the packet mark is
        // only looked at without it. Neither: nothing to filter on, pass.
        let v = match rec.get_u64(self.ct_mark) {
            Some(v) => v,
            None => match rec.get_u64(self.oob_mark) {
                Some(v) => v,
                None => return Verdict::Continue,
            },
        };
        if (v as u32) & self.mask == self.mark {
            Verdict::Continue
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulogd_plugin::{Options, SharedRegistry, Value};

    /// A MARK instance with `opts` set, both inputs bound to slots 0 and 1.
    fn mark(opts: &[(&str, &str)]) -> (Box<dyn Filter>, Record) {
        let mut o = Options::defaults(&OPTIONS).expect("defaults");
        for (k, v) in opts {
            let def = OPTIONS.iter().find(|d| d.name == *k).expect("option");
            o.set(def, v, 1).expect("value");
        }
        let shared = SharedRegistry::default();
        let ctx = BuildCtx {
            instance: "m",
            info: &INFO,
            options: &o,
            shared: &shared,
        };
        let mut f = build(&ctx).expect("build");
        f.bind(&Binding {
            instance: "m",
            input_keys: &INPUT_KEYS,
            inputs: vec![Some(0), Some(1)],
            upstream: &[],
            output_base: 2,
            active: vec![],
        })
        .expect("bind");
        (f, Record::with_slots(2))
    }

    fn run(
        f: &mut Box<dyn Filter>,
        rec: &mut Record,
        ct: Option<u32>,
        oob: Option<u32>,
    ) -> Verdict {
        rec.clear();
        if let Some(v) = ct {
            rec.set(0, Value::U32(v));
        }
        if let Some(v) = oob {
            rec.set(1, Value::U32(v));
        }
        f.process(rec)
    }

    #[test]
    fn ct_mark_first_then_oob_mark() {
        let (mut f, mut r) = mark(&[("mark", "1")]);
        assert_eq!(run(&mut f, &mut r, Some(1), Some(2)), Verdict::Continue);
        assert_eq!(run(&mut f, &mut r, Some(2), Some(1)), Verdict::Drop);
        assert_eq!(run(&mut f, &mut r, None, Some(1)), Verdict::Continue);
        assert_eq!(run(&mut f, &mut r, None, Some(0)), Verdict::Drop);
        assert_eq!(run(&mut f, &mut r, None, None), Verdict::Continue);
    }

    #[test]
    fn defaults_pass_only_mark_zero() {
        let (mut f, mut r) = mark(&[]);
        assert_eq!(run(&mut f, &mut r, None, Some(0)), Verdict::Continue);
        assert_eq!(run(&mut f, &mut r, None, Some(1)), Verdict::Drop);
        assert_eq!(run(&mut f, &mut r, None, Some(0x8000_0000)), Verdict::Drop);
    }

    #[test]
    fn mask_selects_bits_and_takes_any_32_bit_spelling() {
        for mask in ["0xff00", "65280", "0177400"] {
            let (mut f, mut r) = mark(&[("mark", "0x100"), ("mask", mask)]);
            assert_eq!(run(&mut f, &mut r, None, Some(0x1ff)), Verdict::Continue);
            assert_eq!(run(&mut f, &mut r, None, Some(0x200)), Verdict::Drop);
        }
        for mask in ["-1", "0xffffffff", "4294967295"] {
            let (mut f, mut r) = mark(&[("mark", "0xdeadbeef"), ("mask", mask)]);
            assert_eq!(
                run(&mut f, &mut r, None, Some(0xdead_beef)),
                Verdict::Continue
            );
            assert_eq!(run(&mut f, &mut r, None, Some(0xdead_beee)), Verdict::Drop);
        }
        // mark=-1 is the 32-bit all-ones mark, as ulogd's (uint32_t) cast.
        let (mut f, mut r) = mark(&[("mark", "-1")]);
        assert_eq!(run(&mut f, &mut r, Some(u32::MAX), None), Verdict::Continue);
    }

    #[test]
    fn declares_ulogd_options_and_keys() {
        let o: Vec<_> = INFO.options.iter().map(|d| (d.name, d.default)).collect();
        assert_eq!(o, [("mark", "0"), ("mask", "-1")]);
        assert!(INFO.input_keys.iter().all(|k| k.is_optional()));
        assert!(INFO.output_keys.is_empty());
    }
}
