//! The durable spool as an output's options see it: on by default for
//! every output that can lose its peer, under the daemon's state directory.
//!
//! `spool_dir` unset: `<state dir>/spool/<instance>`; `spool_dir=""`: off
//! (an outage is held in memory up to the memory limits, then `when_full`);
//! any other value: `<spool_dir>/<instance>`.

use super::SpoolConfig;
use rulogd_plugin::{BuildCtx, BuildError, OptionDef};
use std::path::PathBuf;
use std::time::Duration;

/// `spool_dir`, as every spooling output declares it.
pub const SPOOL_DIR: OptionDef = OptionDef::str(
    "spool_dir",
    "",
    "Durable spool: <dir>/<instance>; unset: <state dir>/spool/<instance>; \"\": memory only",
);

/// `spool_size`, as every spooling output declares it.
pub const SPOOL_SIZE: OptionDef = OptionDef::int(
    "spool_size",
    "1073741824",
    "Most bytes spooled; beyond it when_full applies",
)
.range(1 << 16, i64::MAX);

/// Default longest wait between reconnects of a spooled delivery.
pub const SPOOL_RETRY_MAX: Duration = Duration::from_secs(2);

/// The spool an instance gets from its `spool_dir` and `spool_size`
/// options; `None` when it is turned off (or there is no state directory,
/// as in tools and unit tests). The directory is created (mode 0700) and
/// remembered for the `-u` hand-over.
pub fn spool_config(
    ctx: &BuildCtx,
    retry_max: Duration,
) -> Result<Option<SpoolConfig>, BuildError> {
    let o = ctx.options;
    let dir: Option<PathBuf> = if o.is_set("spool_dir") {
        let d = o.str("spool_dir");
        (!d.is_empty()).then(|| PathBuf::from(d).join(ctx.instance))
    } else {
        ctx.shared.env().spool_dir(ctx.instance)
    };
    let Some(dir) = dir else {
        return Ok(None);
    };
    let max_bytes = u64::try_from(o.int("spool_size"))
        .map_err(|_| BuildError::option("spool_size", "must not be negative"))?;
    // Made now, private, and (from the topmost directory made here down)
    // handed to the -u user before the drop, so the writer can still add
    // segments after it.
    let mut top = dir.as_path();
    while let Some(p) = top
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        top = p;
    }
    let top = if dir.exists() {
        dir.clone()
    } else {
        top.to_path_buf()
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| spool_error(&dir, e))?;
    }
    ctx.shared.hand_over_later(top);
    Ok(Some(SpoolConfig {
        dir,
        max_bytes,
        retry_max,
    }))
}

/// A spool directory that cannot be made, with what to do about it.
fn spool_error(dir: &std::path::Path, e: std::io::Error) -> BuildError {
    BuildError::io(
        format!(
            "cannot create the spool directory {} (set spool_dir to a writable \
             directory, or spool_dir=\"\" to hold outages in memory only)",
            dir.display()
        ),
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulogd_plugin::{Options, PluginInfo, PluginKind, ProcessEnv, SharedRegistry};

    static OPTS: [OptionDef; 2] = [SPOOL_DIR, SPOOL_SIZE];
    /// An output with only the spool options, as every spooling output has them.
    static INFO: PluginInfo = PluginInfo {
        name: "T",
        kind: PluginKind::Output,
        summary: "test",
        options: &OPTS,
        input_keys: &[],
        output_keys: &[],
        wildcard_input: false,
    };

    fn options(opts: &[(&str, &str)]) -> Options {
        let mut o = Options::defaults(&OPTS).unwrap();
        for (name, text) in opts {
            let def = OPTS.iter().find(|d| d.name == *name).unwrap();
            o.set(def, text, 1).unwrap();
        }
        o
    }

    /// What `spool_config` makes of `opts` with the state directory `state`.
    fn config(
        opts: &[(&str, &str)],
        state: Option<&std::path::Path>,
    ) -> Result<Option<SpoolConfig>, BuildError> {
        let o = options(opts);
        let shared = SharedRegistry::with_env(ProcessEnv {
            state_dir: state.map(PathBuf::from),
            owner: None,
        });
        let ctx = BuildCtx {
            instance: "out1",
            info: &INFO,
            options: &o,
            shared: &shared,
        };
        spool_config(&ctx, SPOOL_RETRY_MAX)
    }

    fn spool_of(opts: &[(&str, &str)], state: Option<&std::path::Path>) -> Option<PathBuf> {
        config(opts, state).unwrap().map(|s| s.dir)
    }

    #[test]
    fn on_by_default_under_the_state_dir_and_off_with_an_empty_value() {
        let tmp = std::env::temp_dir().join(format!("rulogd-spoolopt-{}", std::process::id()));
        let opts = [];
        assert_eq!(spool_of(&opts, Some(&tmp)), Some(tmp.join("spool/out1")));
        // spool/ is made private at once; the instance dir when the spool opens.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.join("spool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let off = [("spool_dir", "")];
        assert_eq!(spool_of(&off, Some(&tmp)), None);
        let own = [("spool_dir", "/x/y")];
        assert_eq!(spool_of(&own, Some(&tmp)), Some(PathBuf::from("/x/y/out1")));
        // Tools and unit tests have no state dir: no default spool.
        assert_eq!(spool_of(&opts, None), None);
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn the_made_directories_go_to_the_run_as_user() {
        // chown to another user needs root; as anyone else hand to oneself.
        // SAFETY: getuid/getgid have no preconditions.
        let (me, my_gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let owner = if me == 0 {
            (65534, 65534)
        } else {
            (me, my_gid)
        };
        let tmp = std::env::temp_dir().join(format!("rulogd-spoolown-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let o = options(&[]);
        let shared = SharedRegistry::with_env(ProcessEnv {
            state_dir: Some(tmp.join("state")),
            owner: Some(owner),
        });
        let ctx = BuildCtx {
            instance: "out1",
            info: &INFO,
            options: &o,
            shared: &shared,
        };
        let dir = spool_config(&ctx, SPOOL_RETRY_MAX).unwrap().unwrap().dir;
        std::fs::write(dir.join("head"), b"").unwrap();
        shared.hand_over_all().unwrap();
        use std::os::unix::fs::MetadataExt;
        for p in [
            tmp.join("state"),
            tmp.join("state/spool"),
            dir.clone(),
            dir.join("head"),
        ] {
            let m = std::fs::metadata(&p).unwrap();
            assert_eq!((m.uid(), m.gid()), owner, "{}", p.display());
        }
        // The directory that was there before is not the daemon's to give.
        assert_eq!(std::fs::metadata(&tmp).unwrap().uid(), me);
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn an_unwritable_state_dir_names_the_way_out() {
        let state = std::path::Path::new("/proc/rulogd-cannot-be-here");
        let e = config(&[], Some(state)).unwrap_err().to_string();
        assert!(e.contains("/proc/rulogd-cannot-be-here/spool/out1"), "{e}");
        assert!(e.contains("spool_dir=\"\""), "{e}");
    }
}
