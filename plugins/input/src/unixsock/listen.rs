//! The listening socket: stale-file handling, bind, permissions, and the
//! small libc pieces std does not offer (non-blocking connect probe, peer
//! credentials, user and group lookup).

use rulogd_plugin::BuildError;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;

/// Where the socket file was created: its device and inode, so that stop
/// only removes the file if it is still ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(path: &Path) -> io::Result<FileId> {
        let m = std::fs::symlink_metadata(path)?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// Removes `path` if it is still the socket file identified by `id`.
pub fn remove_if_ours(path: &Path, id: FileId) {
    if FileId::of(path).is_ok_and(|now| now == id) {
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!("UNIXSOCK: cannot remove {}: {e}", path.display());
        }
    }
}

fn sockaddr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    // One byte is kept for the terminating NUL, as ulogd requires.
    if bytes.len() >= sa.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "path is {} bytes long, a Unix socket path must be shorter than {}",
                bytes.len(),
                sa.sun_path.len()
            ),
        ));
    }
    for (d, s) in sa.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((sa, len as libc::socklen_t))
}

/// Whether a process accepts connections on the socket file `path`. The
/// probe never blocks: a listener with a full backlog answers EAGAIN, which
/// still means someone is there.
fn someone_listens(path: &Path) -> io::Result<bool> {
    let (sa, len) = sockaddr(path)?;
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned here only.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `sa` is a valid sockaddr_un of length `len`.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINPROGRESS) => Ok(true),
        Some(libc::ECONNREFUSED) => Ok(false),
        _ => Err(e),
    }
}

/// Makes room for a new socket at `path`: nothing there is fine; a socket
/// nobody listens on is a leftover of a process that died, and is removed;
/// anything else is an error that says what is in the way.
pub fn clear_stale(path: &Path) -> Result<(), BuildError> {
    let shown = path.display();
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(BuildError::io(
                format!("UNIXSOCK: cannot inspect {shown}"),
                e,
            ))
        }
    };
    if !m.file_type().is_socket() {
        return Err(BuildError::Other(format!(
            "UNIXSOCK: {shown} exists and is not a socket; refusing to replace it"
        )));
    }
    match someone_listens(path) {
        Ok(true) => Err(BuildError::Other(format!(
            "UNIXSOCK: {shown} is in use: another process (ulogd or rulogd?) listens on it"
        ))),
        Ok(false) => {
            std::fs::remove_file(path).map_err(|e| {
                BuildError::io(format!("UNIXSOCK: cannot remove stale socket {shown}"), e)
            })?;
            log::info!("UNIXSOCK: removed stale socket {shown} (nobody was listening)");
            Ok(())
        }
        Err(e) => Err(BuildError::io(
            format!("UNIXSOCK: cannot tell whether {shown} is in use"),
            e,
        )),
    }
}

/// Looks a user up by name; an all-digit name is taken as a uid.
pub fn lookup_uid(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: passwd is plain data; all-zero is a valid value.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut res: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the sizes given; `res` is set to
    // `&mut pw` or null.
    let r = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut res) };
    if r == 0 && !res.is_null() {
        return Some(pw.pw_uid);
    }
    name.parse().ok()
}

/// Looks a group up by name; an all-digit name is taken as a gid.
pub fn lookup_gid(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: group is plain data; all-zero is a valid value.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut res: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in lookup_uid.
    let r = unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut res) };
    if r == 0 && !res.is_null() {
        return Some(gr.gr_gid);
    }
    name.parse().ok()
}

/// Creates the listening socket at `path` (non-blocking), then applies the
/// mode and ownership as ulogd does.
pub fn listen(
    path: &Path,
    perms: u32,
    owner: &str,
    group: &str,
) -> Result<(UnixListener, FileId), BuildError> {
    let shown = path.display();
    sockaddr(path).map_err(|e| BuildError::io(format!("UNIXSOCK: socket_path {shown}"), e))?;
    // Resolve names first: a typo must not leave a socket file behind.
    let uid = match owner {
        "" => None,
        o => Some(lookup_uid(o).ok_or_else(|| {
            BuildError::option("owner", format!("no user `{o}` for unix socket {shown}"))
        })?),
    };
    let gid = match group {
        "" => None,
        g => Some(lookup_gid(g).ok_or_else(|| {
            BuildError::option("group", format!("no group `{g}` for unix socket {shown}"))
        })?),
    };
    clear_stale(path)?;
    let l = UnixListener::bind(path)
        .map_err(|e| BuildError::io(format!("UNIXSOCK: cannot listen on {shown}"), e))?;
    let id = FileId::of(path)
        .map_err(|e| BuildError::io(format!("UNIXSOCK: cannot stat {shown}"), e))?;
    let undo = |e: BuildError| {
        remove_if_ours(path, id);
        e
    };
    l.set_nonblocking(true)
        .map_err(|e| undo(BuildError::io("UNIXSOCK: set non-blocking", e)))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(perms)).map_err(|e| {
        undo(BuildError::io(
            format!("UNIXSOCK: cannot set permissions of {shown}"),
            e,
        ))
    })?;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(path, uid, gid).map_err(|e| {
            undo(BuildError::io(
                format!("UNIXSOCK: cannot set owner/group of {shown}"),
                e,
            ))
        })?;
    }
    Ok((l, id))
}

/// The connecting process, from `SO_PEERCRED`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Process id at connect time.
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// The peer of a connected Unix socket, if the kernel says.
pub fn peer(fd: RawFd) -> Option<Peer> {
    // SAFETY: ucred is plain data; all-zero is a valid value.
    let mut c: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `c` and `len` are valid for a ucred-sized option.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut c as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(Peer {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
    })
}

/// `SO_RCVBUF` of a socket (ulogd's buffer size when `bufsize` is 0).
pub fn rcvbuf(fd: RawFd) -> io::Result<usize> {
    let mut v: libc::c_int = 0;
    let mut l = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `l` are valid for an int-sized option.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut v as *mut libc::c_int).cast(),
            &mut l,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v.max(0) as usize)
}
