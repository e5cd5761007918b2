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
