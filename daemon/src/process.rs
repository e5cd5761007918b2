//! Process plumbing: pidfile, daemonizing and dropping privileges.

use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A held pidfile: locked while we live, removed at exit.
pub struct PidFile {
    path: PathBuf,
    _file: File,
}

fn try_lock(f: &File) -> bool {
    // SAFETY: flock on an fd we own.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl PidFile {
    /// Creates and locks `path`; a stale file (no lock holder) is replaced.
    pub fn create(path: &Path) -> Result<PidFile> {
        if let Ok(mut old) = File::open(path) {
            if !try_lock(&old) {
                let mut s = String::new();
                let _ = old.read_to_string(&mut s);
                bail!(
                    "another rulogd is already running with pid {} (pidfile {})",
                    s.trim(),
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale pidfile {}", path.display()))?;
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
            .with_context(|| format!("creating pidfile {}", path.display()))?;
        if !try_lock(&f) {
            bail!("cannot lock pidfile {}", path.display());
        }
        writeln!(f, "{}", std::process::id())?;
        Ok(PidFile {
            path: path.to_path_buf(),
            _file: f,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The write end of the pipe through which a daemonized child tells the
/// waiting parent whether start-up worked.
pub struct ReadyPipe(File);

impl ReadyPipe {
    /// Start-up succeeded: the parent exits 0.
    pub fn ok(mut self) {
        let _ = self.0.write_all(b"ok");
    }

    /// Start-up failed: the parent prints `msg` and exits 1.
    pub fn fail(mut self, msg: &str) {
        let _ = self.0.write_all(msg.as_bytes());
    }
}

/// Forks; the parent waits for the child's verdict and exits with it, the
/// child continues in a new session with stdio on /dev/null.
///
/// Must run before any thread is started.
pub fn daemonize() -> Result<ReadyPipe> {
    let mut fds = [0; 2];
    // SAFETY: plain syscalls on fresh descriptors.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            bail!("pipe: {}", std::io::Error::last_os_error());
        }
        match libc::fork() {
            -1 => bail!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                libc::close(fds[0]);
                libc::setsid();
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    libc::dup2(null, 0);
                    libc::dup2(null, 1);
                    libc::dup2(null, 2);
                    if null > 2 {
                        libc::close(null);
                    }
                }
                Ok(ReadyPipe(File::from_raw_fd(fds[1])))
            }
            _ => {
                libc::close(fds[1]);
                let mut r = File::from_raw_fd(fds[0]);
                let mut msg = String::new();
                let _ = r.read_to_string(&mut msg);
                if msg == "ok" {
                    std::process::exit(0);
                }
                if msg.is_empty() {
                    msg = "the daemon exited during start-up".into();
                }
                eprintln!("rulogd: {msg}");
                std::process::exit(1);
            }
        }
    }
}

/// The uid and primary gid of `user`.
pub fn lookup_user(user: &str) -> Result<(u32, u32)> {
    let c = CString::new(user).context("user name contains NUL")?;
    // SAFETY: getpwnam returns a pointer into static storage, read at once.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        if pw.is_null() {
            bail!("unknown user `{user}`");
        }
        Ok(((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// The state directory: systemd's `$STATE_DIRECTORY` (its first entry)
/// when the unit sets `StateDirectory=`, else [`DEFAULT_STATE_DIR`].
pub fn state_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .and_then(|v| {
            v.to_str()
                .and_then(|s| s.split(':').next())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// Where durable state (default spools) goes without `$STATE_DIRECTORY`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/rulogd";

/// Whether this process (after the privilege drop: the `-u` user, with its
/// groups and any ACL) may create and remove files in `dir`.
pub fn can_create_in(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: access(2) reads the NUL-terminated path only.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Switches to `user` (its uid, primary gid and supplementary groups).
pub fn drop_privileges(user: &str) -> Result<()> {
    let c = CString::new(user).context("user name contains NUL")?;
    let (uid, gid) = lookup_user(user)?;
    // SAFETY: plain credential calls with values getpwnam gave; prctl with
    // its documented integer arguments.
    unsafe {
        // Netfilter checks CAP_NET_ADMIN on every nfnetlink request, not
        // only at bind: NFQUEUE's verdicts, NFCT's and NFACCT's polls and
        // NFLOG's unbind at stop would all fail after the drop. The main
        // thread keeps that one capability across setuid (the input threads
        // start after this and inherit it); everything else goes.
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            bail!(
                "prctl(PR_SET_KEEPCAPS): {}",
                std::io::Error::last_os_error()
            );
        }
        if libc::setgid(gid) != 0 {
            bail!("setgid({gid}): {}", std::io::Error::last_os_error());
        }
        if libc::initgroups(c.as_ptr(), gid) != 0 {
            bail!("initgroups: {}", std::io::Error::last_os_error());
        }
        if libc::setuid(uid) != 0 {
            bail!("setuid({uid}): {}", std::io::Error::last_os_error());
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    keep_only_net_admin()?;
    log::info!("running as user {user} (uid {uid}), keeping only CAP_NET_ADMIN");
    Ok(())
}

/// Sets this thread's capabilities to CAP_NET_ADMIN alone (permitted and
/// effective), or none if it was not permitted.
fn keep_only_net_admin() -> Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_ADMIN: u32 = 12;
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut cur = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data structs, as the
    // kernel's ABI for 64 capability bits asks.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut hdr, cur.as_mut_ptr()) != 0 {
            bail!("capget: {}", std::io::Error::last_os_error());
        }
        let bit = 1u32 << CAP_NET_ADMIN;
        let keep = cur[0].permitted & bit;
        let new = [
            Data {
                effective: keep,
                permitted: keep,
                inheritable: 0,
            },
            Data::default(),
        ];
        if libc::syscall(libc::SYS_capset, &mut hdr, new.as_ptr()) != 0 {
            bail!("capset: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}
