//! The workspace's layering rule, checked over `cargo metadata`:
//! - a plugin crate (plugins/input, plugins/filter, plugins/output) depends
//!   on the plugin API crate and library crates (crates/*), never on another
//!   plugin crate or the daemon;
//! - a library crate never depends on a plugin crate or the daemon;
//! - the API crate depends on no crate of the workspace.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// What a workspace crate is, by where it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    Api,
    Library,
    Plugin,
    Daemon,
    Other,
}

fn layer(manifest: &Path, root: &Path) -> Layer {
    let rel = manifest.strip_prefix(root).unwrap_or(manifest);
    let s = rel.to_string_lossy();
    if s.starts_with("plugins/api/") {
        Layer::Api
    } else if s.starts_with("crates/") {
        Layer::Library
    } else if s.starts_with("plugins/") {
        Layer::Plugin
    } else if s.starts_with("daemon/") {
        Layer::Daemon
    } else {
        Layer::Other
    }
}

#[test]
fn plugin_crates_use_only_the_api_and_library_crates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output();
    let meta: serde_json::Value =
        serde_json::from_str(&rulogd_tests::check_output("cargo metadata", out)).unwrap();
    let pkgs = meta["packages"].as_array().unwrap();
    let layers: BTreeMap<String, Layer> = pkgs
        .iter()
        .map(|p| {
            let m = Path::new(p["manifest_path"].as_str().unwrap());
            (p["name"].as_str().unwrap().to_string(), layer(m, root))
        })
        .collect();
    assert!(layers.values().filter(|l| **l == Layer::Plugin).count() >= 3);
    assert!(layers.values().any(|l| *l == Layer::Library));
    let mut wrong = Vec::new();
    for p in pkgs {
        let name = p["name"].as_str().unwrap();
        let from = layers[name];
        for d in p["dependencies"].as_array().unwrap() {
            if d["kind"].as_str() == Some("dev") {
                continue;
            }
            let Some(&to) = layers.get(d["name"].as_str().unwrap()) else {
                continue;
            };
            let allowed = match from {
                Layer::Api => false,
                Layer::Library => matches!(to, Layer::Api | Layer::Library),
                Layer::Plugin => matches!(to, Layer::Api | Layer::Library),
                Layer::Daemon | Layer::Other => true,
            };
            if !allowed {
                wrong.push(format!("{name} ({from:?}) -> {} ({to:?})", d["name"]));
            }
        }
    }
    assert!(wrong.is_empty(), "layering violated: {wrong:?}");
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// One module style in every crate's src/: a module with submodules is a
/// folder with `mod.rs` (never `foo.rs` beside `foo/`), and no `#[path]`
/// points a module at a file of another name.
#[test]
fn one_module_style() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for group in ["crates", "plugins", "examples/plugins"] {
        for e in std::fs::read_dir(root.join(group)).unwrap().flatten() {
            rust_files(&e.path().join("src"), &mut files);
        }
    }
    rust_files(&root.join("daemon/src"), &mut files);
    rust_files(&root.join("bench/src"), &mut files);
    assert!(files.len() > 100, "found only {} files", files.len());
    let mut wrong = Vec::new();
    for f in &files {
        if f.with_extension("").is_dir() {
            wrong.push(format!("{} beside its folder", f.display()));
        }
        let text = std::fs::read_to_string(f).unwrap();
        if text.lines().any(|l| l.trim_start().starts_with("#[path")) {
            wrong.push(format!("{} uses #[path]", f.display()));
        }
    }
    assert!(wrong.is_empty(), "module style: {wrong:?}");
}
