//! Every shipped config parses and builds its stacks; every broken config in
//! tests/broken is rejected with the right file:line and no panic; `rulogd -t`
//! prints the stacks with their bindings.

use std::path::{Path, PathBuf};
use std::process::Command;

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else if p.extension().is_some_and(|x| x == "conf" || x == "toml") {
            out.push(p);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn every_file_under_conf_parses_and_builds() {
    let mut files = Vec::new();
    files_under(&root().join("conf"), &mut files);
    assert!(
        files.len() >= 4,
        "expected the shipped configs, found {files:?}"
    );
    for f in files {
        let cfg = rulogd::config::load(&f).unwrap_or_else(|e| panic!("{e}"));
        let trees = rulogd::check(&cfg).unwrap_or_else(|e| panic!("{e}"));
        assert!(!trees.is_empty(), "{}", f.display());
    }
}

#[test]
fn the_embedded_default_is_conf_rulogd_conf() {
    let on_disk = std::fs::read_to_string(root().join("conf/rulogd.conf")).unwrap();
    assert_eq!(on_disk, rulogd::DEFAULT_CONFIG);
    let cfg = rulogd::load_config(None).unwrap();
    rulogd::check(&cfg).unwrap();
}

#[test]
fn broken_configs_are_rejected_with_file_and_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let first = text.lines().next().unwrap();
        let spec = first
            .strip_prefix("# expect ")
            .expect("first line: # expect N: text");
        let (line, needle) = spec
            .split_once(": ")
            .unwrap_or((spec.trim_end_matches(':'), ""));
        let line: u32 = line.parse().unwrap();
        let err = match rulogd::config::load(&p) {
            Err(e) => e,
            Ok(cfg) => match rulogd::check(&cfg) {
                Err(e) => e,
                Ok(_) => panic!("{} was accepted", p.display()),
            },
        };
        let msg = err.to_string();
        assert_eq!(err.line, line, "{}: {msg}", p.display());
        assert!(
            msg.contains(needle),
            "{}: `{msg}` lacks `{needle}`",
            p.display()
        );
        let loc = if line > 0 {
            format!("{}:{line}: ", p.display())
        } else {
            format!("{}: ", p.display())
        };
        assert!(msg.starts_with(&loc), "{msg}");
        n += 1;
    }
    assert!(n >= 14, "only {n} broken configs");
}

#[test]
fn check_flag_prints_stacks_and_bindings() {
    let out = Command::new(env!("CARGO_BIN_EXE_rulogd"))
        .args(["-t", "-c"])
        .arg(root().join("conf/examples/accept-drop.conf"))
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{s}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.contains("stack 1 ("), "{s}");
    assert!(s.contains("stack 2 ("), "{s}");
    assert!(s.contains("raw.pkt <- accept.raw.pkt"), "{s}");
    assert!(s.contains("raw.pkt <- drop.raw.pkt"), "{s}");
    assert!(s.contains("oob.ifindex_in <- accept.oob.ifindex_in"), "{s}");
    assert!(s.contains("json1 (JSON): every upstream key"), "{s}");
    assert!(s.trim_end().ends_with("OK"), "{s}");

    let bad = Command::new(env!("CARGO_BIN_EXE_rulogd"))
        .args(["-t", "-c"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken/unknown-option.conf"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(
        e.contains("unknown-option.conf:6: [json1]: unknown option `filee`"),
        "{e}"
    );
}

#[test]
fn info_describes_plugins_by_name_and_by_ulogd_path() {
    for arg in [
        "JSON",
        "/usr/lib/x86_64-linux-gnu/ulogd/ulogd_output_JSON.so",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rulogd"))
            .args(["--info", arg])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(s.contains("Name: JSON"), "{s}");
        assert!(
            s.contains("Var: boolean_label (Integer, Default: 0)"),
            "{s}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_rulogd"))
        .args(["-i", "NFLOG"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("Key: oob.prefix (string)"), "{s}");
    assert!(
        s.contains("Var: netlink_socket_buffer_maxsize (Integer, Default: 0)"),
        "{s}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_rulogd"))
        .args(["-i", "NOPE"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn man_page_documents_every_plugin_and_option() {
    let man = std::fs::read_to_string(root().join("man/rulogd.conf.5")).unwrap();
    for r in rulogd::registry::builtins() {
        assert!(
            man.contains(r.info.name),
            "man/rulogd.conf.5 lacks plugin {}",
            r.info.name
        );
        for o in r.info.options {
            assert!(
                man.contains(&format!(".B {} ", o.name))
                    || man.contains(&format!("\\fB{} ", o.name))
                    || man.contains(&format!(".B {}\n", o.name)),
                "man/rulogd.conf.5 lacks option {} of {}",
                o.name,
                r.info.name
            );
        }
    }
}

#[test]
fn every_shipped_example_passes_the_check() {
    let mut n = 0;
    for e in std::fs::read_dir(root().join("conf/examples")).unwrap() {
        let p = e.unwrap().path();
        let out = Command::new(env!("CARGO_BIN_EXE_rulogd"))
            .args(["-t", "-c"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        n += 1;
    }
    assert!(n >= 4, "only {n} examples");
}
