//! Building stacks: config → a tree per input instance → bound plugin instances.
//!
//! Stack lines that start with the same instance ids share those instances,
//! so each input owns a tree whose leaves are outputs. Every key gets a slot:
//! an instance's outputs follow its ancestors' outputs, and siblings reuse the
//! same slot numbers (only one branch runs at a time), so a record is as wide
//! as the deepest path, not the whole tree.

mod options;
mod sections;

use crate::config::{Config, ConfigError, StackLine};
use crate::registry;
use rulogd_plugin::{
    Above, Binding, BuildCtx, BuildError, Builder, Filter, Input, KeyDef, Options, Output,
    PluginKind, Registration, SharedRegistry, Slot, UpstreamKey,
};
use std::collections::HashSet;
use std::fmt::Write as _;

pub use options::options_for;
pub use sections::check_sections;

/// A built filter or output instance.
pub enum Instance {
    /// A filter.
    Filter(Box<dyn Filter>),
    /// An output.
    Output(Box<dyn Output>),
}

/// A filter or output in an input's tree.
pub struct Node {
    /// Instance id.
    pub id: String,
    /// The plugin.
    pub reg: Registration,
    /// Validated options.
    pub options: Options,
    /// The stack line that first created this node.
    pub line: u32,
    /// First output slot.
    pub base: Slot,
    /// Input keys (static, computed by the instance, or every upstream key).
    pub in_keys: Vec<KeyDef>,
    /// Nearest producer of each input key.
    pub inputs: Vec<Option<Slot>>,
    /// Every upstream key (for wildcard consumers).
    pub upstream: Vec<UpstreamKey>,
    /// Downstream nodes.
    pub children: Vec<Node>,
    /// The instance, once built.
    pub inst: Option<Instance>,
}

/// An input instance and the stacks hanging off it.
pub struct Tree {
    /// Instance id.
    pub id: String,
    /// The plugin.
    pub reg: Registration,
    /// Validated options.
    pub options: Options,
    /// The stack line that first named it.
    pub line: u32,
    /// Children (first filter or output of each stack).
    pub children: Vec<Node>,
    /// Slots a record needs.
    pub nslots: usize,
    /// The instance, once built.
    pub inst: Option<Box<dyn Input>>,
}

fn kind_name(k: PluginKind) -> &'static str {
    match k {
        PluginKind::Input => "an input",
        PluginKind::Filter => "a filter",
        PluginKind::Output => "an output",
    }
}

/// Checks names, shapes and options and lays out the trees (no side effects).
/// External plugins named by `plugin=` lines are loaded first, so their
/// names work in stack lines.
pub fn plan(cfg: &Config) -> Result<Vec<Tree>, ConfigError> {
    crate::external::load_config_plugins(cfg)?;
    plan_with(cfg, &registry::find)
}

/// [`plan`] with a given plugin lookup (tests use their own plugins).
pub fn plan_with(
    cfg: &Config,
    find: &dyn Fn(&str) -> Option<Registration>,
) -> Result<Vec<Tree>, ConfigError> {
    if cfg.stacks.is_empty() {
        return Err(cfg.err(0, "no stack= line in [global]: nothing to do"));
    }
    for p in cfg
        .plugins
        .iter()
        .filter(|p| !crate::external::is_external(&p.path))
    {
        let name = registry::name_from_path(&p.path);
        if find(name).is_none() {
            log::warn!(
                "{}:{}: plugin `{}` ({name}) is not built into rulogd; a stack that uses it will be rejected",
                cfg.path.display(),
                p.line,
                p.path
            );
        }
    }
    let mut trees: Vec<Tree> = Vec::new();
    // instance id → (plugin name, line), so one id always means one plugin.
    let mut ids: Vec<(String, &'static str, u32)> = Vec::new();
    for st in &cfg.stacks {
        let n = st.elems.len();
        let mut regs = Vec::with_capacity(n);
        for (i, e) in st.elems.iter().enumerate() {
            let reg = find(&e.plugin).ok_or_else(|| {
                cfg.err(
                    st.line,
                    format!(
                        "stack `{}`: unknown plugin `{}` for instance `{}`; known plugins: {}",
                        st.text,
                        e.plugin,
                        e.id,
                        registry::names(None).join(", ")
                    ),
                )
            })?;
            let want = if i == 0 {
                PluginKind::Input
            } else if i == n - 1 {
                PluginKind::Output
            } else {
                PluginKind::Filter
            };
            if reg.info.kind != want {
                let pos = if i == 0 {
                    "first"
                } else if i == n - 1 {
                    "last"
                } else {
                    "middle"
                };
                return Err(cfg.err(
                    st.line,
                    format!(
                        "stack `{}`: `{}:{}` is {} plugin, but the {pos} element must be {}",
                        st.text,
                        e.id,
                        e.plugin,
                        kind_name(reg.info.kind),
                        kind_name(want)
                    ),
                ));
            }
            if let Some((_, p, l)) = ids.iter().find(|(id, _, _)| *id == e.id) {
                if *p != reg.info.name {
                    return Err(cfg.err(
                        st.line,
                        format!(
                            "instance id `{}` is used for {} here and for {p} at line {l}",
                            e.id, reg.info.name
                        ),
                    ));
                }
            } else {
                ids.push((e.id.clone(), reg.info.name, st.line));
            }
            regs.push(reg);
        }
        let root = &st.elems[0];
        let ti = match trees.iter().position(|t| t.id == root.id) {
            Some(i) => i,
            None => {
                let options = options_for(cfg, &root.id, regs[0].info, st.line)?;
                trees.push(Tree {
                    id: root.id.clone(),
                    reg: regs[0],
                    options,
                    line: st.line,
                    children: Vec::new(),
                    nslots: 0,
                    inst: None,
                });
                trees.len() - 1
            }
        };
        let mut level = &mut trees[ti].children;
        for (e, reg) in st.elems[1..].iter().zip(&regs[1..]) {
            let pos = match level.iter().position(|c| c.id == e.id) {
                Some(p) => p,
                None => {
                    let options = options_for(cfg, &e.id, reg.info, st.line)?;
                    level.push(Node {
                        id: e.id.clone(),
                        reg: *reg,
                        options,
                        line: st.line,
                        base: 0,
                        in_keys: reg.info.input_keys.to_vec(),
                        inputs: Vec::new(),
                        upstream: Vec::new(),
                        children: Vec::new(),
                        inst: None,
                    });
                    level.len() - 1
                }
            };
            level = &mut level[pos].children;
        }
        if !level.is_empty() {
            return Err(cfg.err(
                st.line,
                format!("stack `{}` continues past its output", st.text),
            ));
        }
    }
    let mut seen = Vec::new();
    for t in &trees {
        seen.push(options::Seen {
            id: &t.id,
            info: t.reg.info,
            options: &t.options,
            line: t.line,
        });
        collect(&t.children, &mut seen);
    }
    options::check_unique(cfg, &seen)?;
    let mut plugins = registry::names(None);
    plugins.extend(ids.iter().map(|(_, p, _)| *p));
    check_sections(cfg, &plugins)?;
    Ok(trees)
}

fn collect<'a>(nodes: &'a [Node], into: &mut Vec<options::Seen<'a>>) {
    for n in nodes {
        if !into.iter().any(|s| s.id == n.id) {
            into.push(options::Seen {
                id: &n.id,
                info: n.reg.info,
                options: &n.options,
                line: n.line,
            });
        }
        collect(&n.children, into);
    }
}

/// An ancestor as seen during resolution.
struct Anc {
    id: String,
    keys: &'static [KeyDef],
    base: Slot,
}

fn nearest(ancs: &[Anc], name: &str) -> Option<Slot> {
    ancs.iter().rev().find_map(|a| {
        a.keys
            .iter()
            .position(|k| k.name == name)
            .map(|i| a.base + i as Slot)
    })
}

fn stack_text(cfg: &Config, line: u32) -> &str {
    cfg.stacks
        .iter()
        .find(|s: &&StackLine| s.line == line)
        .map(|s| s.text.as_str())
        .unwrap_or("")
}

fn resolve_nodes(
    cfg: &Config,
    nodes: &mut [Node],
    ancs: &mut Vec<Anc>,
    next: Slot,
    max: &mut usize,
) -> Result<(), ConfigError> {
    for node in nodes.iter_mut() {
        node.base = next;
        let info = node.reg.info;
        if info.wildcard_input {
            node.upstream.clear();
            node.in_keys.clear();
            for a in ancs.iter() {
                for k in a.keys {
                    if let Some(slot) = nearest(ancs, &k.name) {
                        node.upstream.push(UpstreamKey {
                            def: k.clone(),
                            slot,
                            producer: a.id.clone(),
                        });
                        node.in_keys.push(k.clone().optional());
                    }
                }
            }
            node.inputs = node.upstream.iter().map(|u| Some(u.slot)).collect();
        } else {
            node.inputs.clear();
            for k in &node.in_keys {
                if k.is_inactive() {
                    node.inputs.push(None);
                    continue;
                }
                let s = nearest(ancs, &k.name);
                if s.is_none() && !k.is_optional() {
                    let up: Vec<String> = ancs.iter().map(|a| a.id.to_string()).collect();
                    return Err(cfg.err(
                        node.line,
                        format!(
                            "stack `{}`: instance `{}` ({}) needs key `{}`, which nothing upstream ({}) provides",
                            stack_text(cfg, node.line),
                            node.id,
                            info.name,
                            k.name,
                            up.join(", ")
                        ),
                    ));
                }
                node.inputs.push(s);
            }
        }
        let nout = info.output_keys.len() as Slot;
        let end = next + nout;
        *max = (*max).max(end as usize);
        ancs.push(Anc {
            id: node.id.clone(),
            keys: info.output_keys,
            base: next,
        });
        let r = resolve_nodes(cfg, &mut node.children, ancs, end, max);
        ancs.pop();
        r?;
    }
    Ok(())
}

/// Binds every input key of every node to the nearest upstream producer.
pub fn resolve(cfg: &Config, trees: &mut [Tree]) -> Result<(), ConfigError> {
    for t in trees.iter_mut() {
        let keys = t.reg.info.output_keys;
        let mut max = keys.len();
        let mut ancs = vec![Anc {
            id: t.id.clone(),
            keys,
            base: 0,
        }];
        resolve_nodes(
            cfg,
            &mut t.children,
            &mut ancs,
            keys.len() as Slot,
            &mut max,
        )?;
        t.nslots = max;
    }
    Ok(())
}

/// Builds every plugin instance; inputs open their sockets here, outputs
/// their files and writer threads.
pub fn instantiate(
    cfg: &Config,
    trees: &mut [Tree],
    shared: &SharedRegistry,
) -> anyhow::Result<()> {
    // An option a builder still refuses is reported at its own line when
    // it was written (the stack line only locates defaults).
    fn ctx_err(
        cfg: &Config,
        line: u32,
        id: &str,
        name: &str,
        opts: &Options,
        e: BuildError,
    ) -> anyhow::Error {
        let line = match &e {
            BuildError::Option { option, .. } => opts.line_of(option).unwrap_or(line),
            _ => line,
        };
        anyhow::anyhow!(
            "{}:{}: instance `{id}` ({name}): {e}",
            cfg.path.display(),
            line
        )
    }
    fn nodes(
        cfg: &Config,
        list: &mut [Node],
        shared: &SharedRegistry,
        above: &mut Vec<(String, &'static str, &'static [KeyDef])>,
    ) -> anyhow::Result<()> {
        for n in list.iter_mut() {
            let ctx = BuildCtx {
                instance: &n.id,
                info: n.reg.info,
                options: &n.options,
                shared,
            };
            let inst = match n.reg.builder {
                Builder::Filter(b) => {
                    let mut f = b(&ctx)
                        .map_err(|e| ctx_err(cfg, n.line, &n.id, n.reg.info.name, &n.options, e))?;
                    let view: Vec<Above<'_>> = above
                        .iter()
                        .map(|(id, plugin, outputs)| Above {
                            instance: id,
                            plugin,
                            outputs,
                        })
                        .collect();
                    if let Some(k) = f.plan_inputs(&view) {
                        n.in_keys = k.into_owned();
                    }
                    Instance::Filter(f)
                }
                Builder::Output(b) => {
                    let o = b(&ctx)
                        .map_err(|e| ctx_err(cfg, n.line, &n.id, n.reg.info.name, &n.options, e))?;
                    if let Some(k) = o.input_keys() {
                        n.in_keys = k.into_owned();
                    }
                    Instance::Output(o)
                }
                Builder::Input(_) => unreachable!("plan() puts inputs only at the root"),
            };
            n.inst = Some(inst);
            above.push((n.id.clone(), n.reg.info.name, n.reg.info.output_keys));
            let r = nodes(cfg, &mut n.children, shared, above);
            above.pop();
            r?;
        }
        Ok(())
    }
    for t in trees.iter_mut() {
        let ctx = BuildCtx {
            instance: &t.id,
            info: t.reg.info,
            options: &t.options,
            shared,
        };
        let Builder::Input(b) = t.reg.builder else {
            unreachable!("plan() checked the root is an input")
        };
        t.inst =
            Some(b(&ctx).map_err(|e| ctx_err(cfg, t.line, &t.id, t.reg.info.name, &t.options, e))?);
        let mut above = vec![(t.id.clone(), t.reg.info.name, t.reg.info.output_keys)];
        nodes(cfg, &mut t.children, shared, &mut above)?;
    }
    Ok(())
}

/// Slots read anywhere in a subtree, by records that can reach there: a
/// filter that passes nothing on (FLOW) ends what its children can see
/// of the slots above it.
fn consumed(nodes: &[Node], into: &mut HashSet<Slot>) {
    for n in nodes {
        into.extend(n.inputs.iter().flatten());
        let passes = match &n.inst {
            Some(Instance::Filter(f)) => f.passes(),
            _ => true,
        };
        if passes {
            consumed(&n.children, into);
        }
    }
}

/// Hands every instance its binding (after `resolve` and `instantiate`).
pub fn bind(cfg: &Config, trees: &mut [Tree]) -> anyhow::Result<()> {
    fn nodes(cfg: &Config, list: &mut [Node]) -> anyhow::Result<()> {
        for n in list.iter_mut() {
            let mut used = HashSet::new();
            consumed(&n.children, &mut used);
            let nout = n.reg.info.output_keys.len();
            let b = Binding {
                instance: &n.id,
                input_keys: &n.in_keys,
                inputs: n.inputs.clone(),
                upstream: &n.upstream,
                output_base: n.base,
                active: (0..nout)
                    .map(|i| used.contains(&(n.base + i as Slot)))
                    .collect(),
            };
            let r = match n.inst.as_mut() {
                Some(Instance::Filter(f)) => f.bind(&b),
                Some(Instance::Output(o)) => o.bind(&b),
                None => Ok(()),
            };
            r.map_err(|e| {
                anyhow::anyhow!(
                    "{}:{}: instance `{}` ({}): {e}",
                    cfg.path.display(),
                    n.line,
                    n.id,
                    n.reg.info.name
                )
            })?;
            nodes(cfg, &mut n.children)?;
        }
        Ok(())
    }
    for t in trees.iter_mut() {
        let mut used = HashSet::new();
        consumed(&t.children, &mut used);
        let nout = t.reg.info.output_keys.len();
        let b = Binding {
            instance: &t.id,
            input_keys: &[],
            inputs: Vec::new(),
            upstream: &[],
            output_base: 0,
            active: (0..nout).map(|i| used.contains(&(i as Slot))).collect(),
        };
        if let Some(i) = t.inst.as_mut() {
            i.bind(&b).map_err(|e| {
                anyhow::anyhow!(
                    "{}:{}: instance `{}` ({}): {e}",
                    cfg.path.display(),
                    t.line,
                    t.id,
                    t.reg.info.name
                )
            })?;
        }
        nodes(cfg, &mut t.children)?;
    }
    Ok(())
}

/// A readable account of every stack and its key bindings (`rulogd -t`).
pub fn describe(cfg: &Config, trees: &[Tree]) -> String {
    let mut out = String::new();
    for (i, st) in cfg.stacks.iter().enumerate() {
        let _ = writeln!(
            out,
            "stack {} ({}:{}): {}",
            i + 1,
            cfg.path.display(),
            st.line,
            st.text
        );
        let Some(t) = trees.iter().find(|t| t.id == st.elems[0].id) else {
            continue;
        };
        let names: Vec<(String, &[KeyDef], Slot)> = vec![(t.id.clone(), t.reg.info.output_keys, 0)];
        let _ = writeln!(
            out,
            "  {} ({}): {} output keys",
            t.id,
            t.reg.info.name,
            t.reg.info.output_keys.len()
        );
        let mut producers = names;
        let mut level = &t.children;
        for e in &st.elems[1..] {
            let Some(n) = level.iter().find(|n| n.id == e.id) else {
                break;
            };
            let slot_name = |s: Slot| -> String {
                producers
                    .iter()
                    .find(|(_, k, b)| s >= *b && ((s - b) as usize) < k.len())
                    .map(|(id, k, b)| format!("{id}.{}", k[(s - b) as usize].name))
                    .unwrap_or_else(|| format!("slot {s}"))
            };
            if n.reg.info.wildcard_input {
                let _ = writeln!(
                    out,
                    "  {} ({}): every upstream key ({} keys)",
                    n.id,
                    n.reg.info.name,
                    n.upstream.len()
                );
            } else {
                let _ = writeln!(out, "  {} ({}):", n.id, n.reg.info.name);
                for (k, s) in n.in_keys.iter().zip(&n.inputs) {
                    let src = match s {
                        Some(s) => slot_name(*s),
                        None if k.is_inactive() => "(inactive)".to_string(),
                        None => "(optional, not provided)".to_string(),
                    };
                    let _ = writeln!(out, "    {} <- {src}", k.name);
                }
            }
            producers.push((n.id.clone(), n.reg.info.output_keys, n.base));
            level = &n.children;
        }
    }
    out
}

#[cfg(test)]
mod tests;
