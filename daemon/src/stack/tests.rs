//! Stack building with test plugins: sharing, slots, binding, errors.

use super::*;
use crate::config::parse_ulogd;
use rulogd_plugin::{
    BuildError, KeyType, OptionDef, OutputError, PluginInfo, ReadStatus, Record, Verdict,
};
use std::path::Path;
use std::sync::Mutex;

static IN_KEYS: [KeyDef; 3] = [
    KeyDef::new("a", KeyType::U32),
    KeyDef::new("b", KeyType::U32),
    KeyDef::new("c", KeyType::String),
];
static F_IN: [KeyDef; 2] = [
    KeyDef::new("a", KeyType::U32),
    KeyDef::new("z", KeyType::U32).optional(),
];
static F_OUT: [KeyDef; 2] = [
    KeyDef::new("d", KeyType::U32),
    KeyDef::new("b", KeyType::U32),
];
static END_IN: [KeyDef; 1] = [KeyDef::new("d", KeyType::U32)];
static END_OUT: [KeyDef; 1] = [KeyDef::new("e", KeyType::U32)];
static REQ_IN: [KeyDef; 1] = [KeyDef::new("missing", KeyType::U32)];
static OPTS: [OptionDef; 1] = [OptionDef::int("group", "0", "group")];

static FAKEIN: PluginInfo = PluginInfo {
    name: "FAKEIN",
    kind: PluginKind::Input,
    summary: "test input",
    options: &OPTS,
    input_keys: &[],
    output_keys: &IN_KEYS,
    wildcard_input: false,
};
static FAKEF: PluginInfo = PluginInfo {
    name: "FAKEF",
    kind: PluginKind::Filter,
    summary: "test filter",
    options: &[],
    input_keys: &F_IN,
    output_keys: &F_OUT,
    wildcard_input: false,
};
static FAKEEND: PluginInfo = PluginInfo {
    name: "FAKEEND",
    kind: PluginKind::Filter,
    summary: "ends every record, emits its own (as FLOW)",
    options: &[],
    input_keys: &END_IN,
    output_keys: &END_OUT,
    wildcard_input: false,
};
static FAKEREQ: PluginInfo = PluginInfo {
    name: "FAKEREQ",
    kind: PluginKind::Filter,
    summary: "needs a key nobody has",
    options: &[],
    input_keys: &REQ_IN,
    output_keys: &[],
    wildcard_input: false,
};
static FAKEOUT: PluginInfo = PluginInfo {
    name: "FAKEOUT",
    kind: PluginKind::Output,
    summary: "wildcard output",
    options: &[],
    input_keys: &[],
    output_keys: &[],
    wildcard_input: true,
};

struct In;
impl Input for In {
    fn bind(&mut self, _b: &Binding) -> Result<(), BuildError> {
        Ok(())
    }
    fn fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    fn read(&mut self, _em: &mut dyn rulogd_plugin::Emitter) -> std::io::Result<ReadStatus> {
        Ok(ReadStatus::Idle)
    }
}

/// (instance, inputs, active outputs, upstream names) as bound.
type Bound = (String, Vec<Option<Slot>>, Vec<bool>, Vec<String>);

/// Records what it was bound to, so tests can look.
static BOUND: Mutex<Vec<Bound>> = Mutex::new(Vec::new());

/// A filter; `.1`: it ends every record and emits its own (as FLOW).
struct F(String, bool);
impl Filter for F {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        BOUND
            .lock()
            .unwrap()
            .push((self.0.clone(), b.inputs.clone(), b.active.clone(), vec![]));
        Ok(())
    }
    fn process(&mut self, _r: &mut Record) -> Verdict {
        if self.1 {
            Verdict::Drop
        } else {
            Verdict::Continue
        }
    }
    fn passes(&self) -> bool {
        !self.1
    }
}
struct O(String);
impl Output for O {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        let names = b
            .upstream
            .iter()
            .map(|u| format!("{}@{}", u.def.name, u.slot))
            .collect();
        BOUND
            .lock()
            .unwrap()
            .push((self.0.clone(), b.inputs.clone(), b.active.clone(), names));
        Ok(())
    }
    fn write(&mut self, _r: &Record) -> Result<(), OutputError> {
        Ok(())
    }
}

fn find(name: &str) -> Option<Registration> {
    Some(match name {
        "FAKEIN" => Registration {
            info: &FAKEIN,
            builder: Builder::Input(|_| Ok(Box::new(In))),
        },
        "FAKEF" => Registration {
            info: &FAKEF,
            builder: Builder::Filter(|c| Ok(Box::new(F(c.instance.to_string(), false)))),
        },
        "FAKEEND" => Registration {
            info: &FAKEEND,
            builder: Builder::Filter(|c| Ok(Box::new(F(c.instance.to_string(), true)))),
        },
        "FAKEREQ" => Registration {
            info: &FAKEREQ,
            builder: Builder::Filter(|c| Ok(Box::new(F(c.instance.to_string(), false)))),
        },
        "FAKEOUT" => Registration {
            info: &FAKEOUT,
            builder: Builder::Output(|c| Ok(Box::new(O(c.instance.to_string())))),
        },
        _ => return None,
    })
}

fn cfg(text: &str) -> Config {
    parse_ulogd(Path::new("s.conf"), text).unwrap()
}

#[test]
fn shared_prefixes_form_one_tree_and_siblings_share_slots() {
    let c = cfg("[global]\nstack=in1:FAKEIN,f1:FAKEF,o1:FAKEOUT\nstack=in1:FAKEIN,f1:FAKEF,o2:FAKEOUT\nstack=in1:FAKEIN,f2:FAKEF,o3:FAKEOUT\n");
    let mut t = plan_with(&c, &find).unwrap();
    resolve(&c, &mut t).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(
        t[0].children.len(),
        2,
        "f1 shared by two stacks, f2 separate"
    );
    assert_eq!(t[0].children[0].children.len(), 2);
    // in1 has slots 0..3, f1 and f2 both start at 3 (siblings reuse slots).
    assert_eq!(t[0].children[0].base, 3);
    assert_eq!(t[0].children[1].base, 3);
    assert_eq!(t[0].nslots, 5);
    // f1 reads a from in1 (slot 0); z is optional and absent.
    assert_eq!(t[0].children[0].inputs, vec![Some(0), None]);
    // The wildcard output sees a, b, c, d, b: both b's bound to f1's (nearest) b = slot 4.
    let o1 = &t[0].children[0].children[0];
    let names: Vec<String> = o1
        .upstream
        .iter()
        .map(|u| format!("{}@{}", u.def.name, u.slot))
        .collect();
    assert_eq!(names, ["a@0", "b@4", "c@2", "d@3", "b@4"]);
}

/// Plans, builds and binds the stacks of `c` with the test plugins.
fn built(c: &Config) -> Vec<Tree> {
    let mut t = plan_with(c, &find).unwrap();
    resolve(c, &mut t).unwrap();
    let shared = SharedRegistry::default();
    instantiate(c, &mut t, &shared).unwrap();
    resolve(c, &mut t).unwrap();
    bind(c, &mut t).unwrap();
    t
}

#[test]
fn binding_marks_unread_outputs_inactive() {
    let c = cfg("[global]\nstack=in9:FAKEIN,f9:FAKEF,f10:FAKEF,o9:FAKEOUT\n");
    built(&c);
    let b = BOUND.lock().unwrap();
    let f9 = b.iter().find(|x| x.0 == "f9").unwrap();
    // f10 and o9 read f9's d and b? o9 is a wildcard: it reads f10's b and d (nearest), so f9's are unread.
    assert_eq!(f9.2, vec![false, false]);
    let f10 = b.iter().find(|x| x.0 == "f10").unwrap();
    assert_eq!(f10.2, vec![true, true]);
    // f10's `a` comes from in9 (slot 0).
    assert_eq!(f10.1, vec![Some(0), None]);
}

#[test]
fn behind_a_filter_that_passes_nothing_a_wildcard_makes_nothing_above_it_active() {
    // As CAPTURE → BASE → FLOW → JSON: JSON sees only FLOW's own records.
    let c = cfg("[global]\nstack=in20:FAKEIN,f20:FAKEF,e20:FAKEEND,o20:FAKEOUT\n");
    let t = built(&c);
    let b = BOUND.lock().unwrap();
    let f20 = b.iter().find(|x| x.0 == "f20").unwrap();
    // d is e20's input; b only the wildcard's, which never sees it.
    assert_eq!(f20.2, vec![true, false]);
    let e20 = b.iter().find(|x| x.0 == "e20").unwrap();
    assert_eq!(e20.2, vec![true], "its own output is the wildcard's");
    // in20's a is f20's input; b and c only the wildcard's.
    let t0 = &t[0];
    assert_eq!(t0.children[0].inputs, vec![Some(0), None]);
}

#[test]
fn missing_key_names_stack_instance_and_key() {
    let c = cfg("[global]\n\nstack=in1:FAKEIN,r1:FAKEREQ,o1:FAKEOUT\n");
    let mut t = plan_with(&c, &find).unwrap();
    let e = resolve(&c, &mut t).unwrap_err().to_string();
    assert!(e.starts_with("s.conf:3:"), "{e}");
    assert!(
        e.contains("r1") && e.contains("FAKEREQ") && e.contains("`missing`") && e.contains("in1"),
        "{e}"
    );
}

#[test]
fn shape_and_name_errors() {
    let cases = [
        (
            "[global]\nstack=in1:FAKEIN,o1:NOPE\n",
            "unknown plugin `NOPE`",
        ),
        (
            "[global]\nstack=f1:FAKEF,o1:FAKEOUT\n",
            "first element must be an input",
        ),
        (
            "[global]\nstack=in1:FAKEIN,o1:FAKEOUT,f1:FAKEF\n",
            "middle element must be a filter",
        ),
        (
            "[global]\nstack=in1:FAKEIN,f1:FAKEF\n",
            "last element must be an output",
        ),
        (
            "[global]\nstack=in1:FAKEIN,x:FAKEF,o:FAKEOUT\nstack=in2:FAKEIN,x:FAKEOUT\n",
            "used for FAKEOUT here and for FAKEF",
        ),
        (
            "[global]\nstack=in1:FAKEIN,o:FAKEOUT\n[in1]\ngroupp=1\n",
            "unknown option `groupp`; valid options for FAKEIN: group",
        ),
        (
            "[global]\nstack=in1:FAKEIN,o:FAKEOUT\n[in1]\ngroup=x1\n",
            "not an integer",
        ),
        ("[global]\nloglevel=5\n", "no stack= line"),
    ];
    for (text, needle) in cases {
        let c = cfg(text);
        let e = plan_with(&c, &find)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(needle), "{text:?}: got `{e}`");
        assert!(e.starts_with("s.conf"), "{e}");
    }
}

#[test]
fn describe_lists_bindings() {
    let c = cfg("[global]\nstack=in1:FAKEIN,f1:FAKEF,o1:FAKEOUT\n");
    let mut t = plan_with(&c, &find).unwrap();
    resolve(&c, &mut t).unwrap();
    let d = describe(&c, &t);
    assert!(d.contains("a <- in1.a"), "{d}");
    assert!(d.contains("z <- (optional, not provided)"), "{d}");
    assert!(d.contains("every upstream key (5 keys)"), "{d}");
}
