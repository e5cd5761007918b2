//! Resources shared between plugin instances, and long-lived services
//! (writer threads) the core must reopen, report on and stop.

use crate::stats::StatSet;
use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the daemon tells every plugin about the process it runs in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessEnv {
    /// Where durable state goes (default spools under `spool/<instance>`);
    /// `None` (tests, tools) turns default spools off.
    pub state_dir: Option<PathBuf>,
    /// The uid and gid of `-u USER`: what a plugin creates before the
    /// privilege drop and writes or reopens after it must belong to them.
    pub owner: Option<(u32, u32)>,
}

impl ProcessEnv {
    /// The default spool directory of `instance`, if there is a state dir.
    pub fn spool_dir(&self, instance: &str) -> Option<PathBuf> {
        self.state_dir
            .as_ref()
            .map(|d| d.join("spool").join(instance))
    }

    /// Hands `path` (a file or directory this process created) to the `-u`
    /// user, so that it can still write it after the drop. A no-op without
    /// `-u`.
    pub fn hand_over(&self, path: &Path) -> std::io::Result<()> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
    }
}

/// A long-lived part of an output (a writer thread) that the core controls.
pub trait Service: Send + Sync {
    /// Instance id, for messages.
    fn name(&self) -> &str;
    /// SIGHUP: reopen files or reconnect, losing nothing.
    fn reopen(&self) {}
    /// Stops after everything queued has been written; waits for that.
    fn shutdown(&self);
}

/// The registry handed to builders; the core keeps it for signals and stop.
#[derive(Default)]
pub struct SharedRegistry {
    map: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
    services: Mutex<Vec<Arc<dyn Service>>>,
    stats: StatsView,
    env: ProcessEnv,
    handovers: Mutex<Vec<PathBuf>>,
    reopen_dirs: Mutex<Vec<(PathBuf, String)>>,
}

impl SharedRegistry {
    /// A registry for a process described by `env`.
    pub fn with_env(env: ProcessEnv) -> Self {
        SharedRegistry {
            env,
            ..Default::default()
        }
    }

    /// The process's state directory and `-u` owner.
    pub fn env(&self) -> &ProcessEnv {
        &self.env
    }

    /// Remembers a file or directory tree created while building that the
    /// instance writes or reopens after the privilege drop (a spool, a log
    /// file, an SQLite database and its `-wal`/`-shm`): the core hands
    /// it to the `-u` user just before dropping ([`Self::hand_over_all`]).
    pub fn hand_over_later(&self, path: PathBuf) {
        self.handovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path);
    }

    /// Remembers that `what` (`json1 (JSON) reopens /var/log/x.json`)
    /// creates files in `dir` after the privilege drop: on SIGHUP after a
    /// rotation, or a database deleted while running. The core checks after
    /// the drop that the `-u` user can do that and warns at start if not.
    pub fn reopens_in(&self, dir: PathBuf, what: String) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        self.reopen_dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((dir, what));
    }

    /// Every directory remembered by [`Self::reopens_in`], with what needs
    /// it; empty without `-u` (root can create files anywhere it could at
    /// start).
    pub fn reopen_dirs(&self) -> Vec<(PathBuf, String)> {
        if self.env.owner.is_none() {
            return Vec::new();
        }
        self.reopen_dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Hands every remembered path, and everything below it, to the `-u`
    /// user; a path that no longer exists (an SQLite `-wal` removed at
    /// close) is skipped. A no-op without `-u`.
    pub fn hand_over_all(&self) -> Result<(), (PathBuf, std::io::Error)> {
        if self.env.owner.is_none() {
            return Ok(());
        }
        let paths = self
            .handovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for p in paths {
            self.hand_over_tree(&p)?;
        }
        Ok(())
    }

    fn hand_over_tree(&self, p: &Path) -> Result<(), (PathBuf, std::io::Error)> {
        match self.env.hand_over(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            r => r.map_err(|e| (p.to_path_buf(), e))?,
        }
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| (p.to_path_buf(), e))?;
            for e in entries.flatten() {
                self.hand_over_tree(&e.path())?;
            }
        }
        Ok(())
    }

    /// Returns the resource stored under `key`, creating it with `make` once.
    pub fn get_or_try_insert<T, E>(
        &self,
        key: &str,
        make: impl FnOnce() -> Result<Arc<T>, E>,
    ) -> Result<Arc<T>, E>
    where
        T: Any + Send + Sync,
    {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = map.get(key) {
            if let Ok(t) = Arc::clone(v).downcast::<T>() {
                return Ok(t);
            }
        }
        let t = make()?;
        map.insert(key.to_string(), t.clone() as Arc<dyn Any + Send + Sync>);
        Ok(t)
    }

    /// Registers a service the core must reopen and stop.
    pub fn add_service(&self, s: Arc<dyn Service>) {
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }

    /// Every registered service, in registration order.
    pub fn services(&self) -> Vec<Arc<dyn Service>> {
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Registers a set of counters for SIGUSR1 and the exit summary.
    pub fn add_stats(&self, s: Arc<StatSet>) {
        self.stats
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }

    /// Every registered counter set.
    pub fn stats(&self) -> Vec<Arc<StatSet>> {
        self.stats.sets()
    }

    /// A handle on the list of counter sets that sees the sets registered
    /// after it was taken (a plugin built before later stacks reads them
    /// all at run time).
    pub fn stats_view(&self) -> StatsView {
        self.stats.clone()
    }
}

/// The registry's list of counter sets, shared.
#[derive(Clone, Default)]
pub struct StatsView(Arc<Mutex<Vec<Arc<StatSet>>>>);

impl StatsView {
    /// Every counter set registered so far.
    pub fn sets(&self) -> Vec<Arc<StatSet>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
