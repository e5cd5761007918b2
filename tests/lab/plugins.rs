//! Plugin builds for the external-plugin tests: the C examples with gcc,
//! the Rust cdylibs with cargo, and `rulogd -t` on a config.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Compiles C source `src` into `dir/lib<name>.so` against include/.
pub fn gcc(dir: &Path, name: &str, src: &Path) -> PathBuf {
    let out = dir.join(format!("lib{name}.so"));
    let st = Command::new("gcc")
        .args([
            "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-I",
        ])
        .arg(root().join("include"))
        .arg("-o")
        .arg(&out)
        .arg(src)
        .output();
    crate::check_output(&format!("gcc {} (package gcc)", src.display()), st);
    out
}

/// Writes `text` to `dir/<name>.c` and compiles it.
pub fn gcc_text(dir: &Path, name: &str, text: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, text).unwrap();
    gcc(dir, name, &src)
}

/// The CSV example, compiled into `dir`.
pub fn csv_plugin(dir: &Path) -> PathBuf {
    gcc(dir, "csv", &root().join("examples/plugins/csv_output.c"))
}

/// The Rust cdylibs (PORTDROP, PANICKY, LINES), built once with cargo.
pub fn rust_plugins() -> &'static (PathBuf, PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let st = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "rulogd-example-portdrop",
                "-p",
                "rulogd-test-panicky",
                "-p",
                "rulogd-test-lines",
            ])
            .current_dir(root())
            .status()
            .expect("run cargo");
        assert!(st.success(), "cargo build of the plugin examples failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target"));
        let d = target.join("debug");
        (
            d.join("librulogd_portdrop.so"),
            d.join("librulogd_panicky.so"),
            d.join("librulogd_lines.so"),
        )
    })
}

/// A path for a config file.
pub fn s(p: &Path) -> String {
    crate::path_str(p)
}

/// `rulogd -c conf -t`: (success, stdout + stderr).
pub fn check(dir: &Path, name: &str, conf: &str) -> (bool, String) {
    let path = dir.join(name);
    std::fs::write(&path, conf).unwrap();
    let out = Command::new(crate::rulogd_bin())
        .arg("-c")
        .arg(&path)
        .arg("-t")
        .output()
        .expect("run rulogd");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
