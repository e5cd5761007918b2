//! Network namespaces that clean up after themselves.
//!
//! A [`Netns`] owns one namespace `rl-<tag>-<pid>-<n>` (and optionally a peer
//! namespace joined by a veth pair). Drop kills whatever still runs inside and
//! deletes the namespaces, also when a test panics. Names carry the pid so
//! parallel test binaries never collide, and so a later run can remove the
//! leftovers of a run that was SIGKILLed (its pid is gone).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Addresses of the veth pair made by [`Netns::with_peer`]. Each pair lives in
/// its own two namespaces, so every test can use the same ones.
pub const VETH_MAIN: &str = "rlv0";
pub const VETH_PEER: &str = "rlv1";
pub const MAIN_V4: &str = "10.201.0.1";
pub const PEER_V4: &str = "10.201.0.2";
pub const MAIN_V6: &str = "fd00:201::1";
pub const PEER_V6: &str = "fd00:201::2";

static SEQ: AtomicU32 = AtomicU32::new(0);
// `ip netns add/del` mounts under /run/netns; the first call makes that
// directory a shared mount. Serialising create/delete within a test binary
// avoids racing on that setup when tests run in parallel.
static NS_LOCK: Mutex<()> = Mutex::new(());
static SWEPT: std::sync::Once = std::sync::Once::new();

pub struct Netns {
    name: String,
    peer: Option<String>,
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Deletes `rl-*-<pid>-<n>` namespaces whose creating process is gone: they
/// were left by a lab that was killed before its Drop ran.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if !name.starts_with("rl-") {
            continue;
        }
        let parts: Vec<&str> = name.rsplitn(3, '-').collect();
        let Some(pid) = parts.get(1).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_in(name);
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// SIGKILLs every process still inside namespace `name` (daemons or senders
/// a panicking test did not get to stop); they were all started by the lab.
fn kill_all_in(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: plain syscall; the pid was just listed in our namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Netns {
    /// A fresh namespace with `lo` up (127.0.0.1 and ::1).
    pub fn new(tag: &str) -> io::Result<Netns> {
        let _g = NS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        SWEPT.call_once(sweep_stale);
        let ns = Netns {
            name: Self::make(tag)?,
            peer: None,
        };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Two namespaces joined by a veth pair: this one (`rlv0`, 10.201.0.1/24,
    /// fd00:201::1/64) and a peer (`rlv1`, 10.201.0.2/24, fd00:201::2/64).
    /// The pair is created directly inside the namespaces, so it never exists
    /// in the root namespace.
    pub fn with_peer(tag: &str) -> io::Result<Netns> {
        let mut ns = Netns::new(tag)?;
        let _g = NS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let peer = Self::make(&format!("{tag}p"))?;
        ns.peer = Some(peer.clone());
        let main = ns.name.clone();
        ip(&["-n", &peer, "link", "set", "lo", "up"])?;
        ip(&[
            "-n", &main, "link", "add", VETH_MAIN, "type", "veth", "peer", "name", VETH_PEER,
            "netns", &peer,
        ])?;
        for (n, dev, v4, v6) in [
            (&main, VETH_MAIN, MAIN_V4, MAIN_V6),
            (&peer, VETH_PEER, PEER_V4, PEER_V6),
        ] {
            ip(&["-n", n, "addr", "add", &format!("{v4}/24"), "dev", dev])?;
            // nodad: duplicate address detection would keep the address
            // "tentative" (unusable) for a second or two.
            ip(&[
                "-n",
                n,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
            ip(&["-n", n, "link", "set", dev, "up"])?;
        }
        Ok(ns)
    }

    /// Loads a table `t` whose input chain logs every packet (with
    /// `udp_dport`, only the UDP ones to it) to `group` with `prefix`. As
    /// nft JSON: the text syntax cannot carry a `"` in a prefix.
    pub fn log_input_prefixed(&self, prefix: &str, group: u16, udp_dport: Option<u16>) {
        self.nft("table inet t {\n chain in {\n  type filter hook input priority 0;\n }\n}\n")
            .unwrap();
        let mut expr = Vec::new();
        if let Some(port) = udp_dport {
            expr.push(serde_json::json!({"match": {"op": "==",
                "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": port}}));
        }
        expr.push(serde_json::json!({"log": {"prefix": prefix, "group": group}}));
        let rule = serde_json::json!({"nftables": [{"add": {"rule": {
            "family": "inet", "table": "t", "chain": "in", "expr": expr
        }}}]});
        self.nft_json(&rule.to_string()).unwrap();
    }

    /// A fresh namespace with the nfacct objects `names`, the first counting
    /// the UDP datagrams to port 9999 (an iptables rule).
    pub fn with_nfacct(tag: &str, names: &[&str]) -> Netns {
        let ns = Netns::new(tag).unwrap();
        let mut rule: Vec<&str> =
            "iptables -w -A INPUT -p udp --dport 9999 -m nfacct --nfacct-name"
                .split(' ')
                .collect();
        rule.push(names[0]);
        let adds = names.iter().map(|n| vec!["nfacct", "add", n]);
        for args in adds.chain([rule]) {
            let out = ns.command(args[0]).args(&args[1..]).output().unwrap();
            assert!(out.status.success(), "{args:?}: {out:?}");
        }
        ns
    }

    /// A fresh namespace where conntrack runs (an nft rule needs it), with
    /// its accounting and timestamp sysctls as given.
    pub fn with_conntrack(tag: &str, acct: bool, timestamp: bool) -> Netns {
        let ns = Netns::new(tag).unwrap();
        ns.nft(
            "table inet t {\n chain in {\n  type filter hook input priority 0;\n  ct state new counter\n }\n}\n",
        )
        .unwrap();
        ns.conntrack_sysctls(acct, timestamp);
        ns
    }

    /// `conntrack -F`: ends every tracked flow, so NFCT reports them.
    pub fn conntrack_flush(&self) {
        let out = self.command("conntrack").arg("-F").output().unwrap();
        assert!(out.status.success(), "conntrack -F: {out:?}");
    }

    /// Sets `net.netfilter.nf_conntrack_acct` and `_timestamp`; panics if
    /// sysctl fails.
    pub fn conntrack_sysctls(&self, acct: bool, timestamp: bool) {
        for (k, on) in [("acct", acct), ("timestamp", timestamp)] {
            let st = self
                .command("sysctl")
                .args([
                    "-qw",
                    &format!("net.netfilter.nf_conntrack_{k}={}", on as u8),
                ])
                .status()
                .unwrap();
            assert!(st.success(), "sysctl nf_conntrack_{k}={}", on as u8);
        }
    }

    /// Joins this namespace and `other` by a veth pair: `dev` here with
    /// `addr`, `other_dev` there with `other_addr` (IPv4 with prefix, e.g.
    /// `10.202.3.1/30`), both up. Many links make a hub: one namespace
    /// (a server's) joined to many (clients'), each by its own subnet. The
    /// pair goes when either namespace is deleted.
    pub fn veth_to(
        &self,
        dev: &str,
        addr: &str,
        other: &Netns,
        other_dev: &str,
        other_addr: &str,
    ) -> io::Result<()> {
        ip(&[
            "-n",
            &self.name,
            "link",
            "add",
            dev,
            "type",
            "veth",
            "peer",
            "name",
            other_dev,
            "netns",
            &other.name,
        ])?;
        for (n, d, a) in [
            (&self.name, dev, addr),
            (&other.name, other_dev, other_addr),
        ] {
            ip(&["-n", n, "addr", "add", a, "dev", d])?;
            ip(&["-n", n, "link", "set", d, "up"])?;
        }
        Ok(())
    }

    fn make(tag: &str) -> io::Result<String> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("rl-{tag}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name])?;
        Ok(name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    /// Loads an nft ruleset (text syntax) inside this namespace.
    pub fn nft(&self, ruleset: &str) -> io::Result<()> {
        self.nft_stdin(&[], ruleset)
    }

    /// Loads nft JSON (`{"nftables": [...]}`). Needed for log prefixes with a
    /// `"`: nft 1.0.6's text scanner has no escape for it inside a string.
    pub fn nft_json(&self, json: &str) -> io::Result<()> {
        self.nft_stdin(&["-j"], json)
    }

    fn nft_stdin(&self, extra: &[&str], input: &str) -> io::Result<()> {
        let mut child = self
            .command("nft")
            .args(extra)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "nft failed in {}: {}\n--- input ---\n{input}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// Packets counted by the named counter object `name` in `table` of
    /// family `family` (e.g. `inet`). Rules that log use `counter name "x"`
    /// so a test can assert lines written == packets that hit the rule.
    pub fn counter(&self, family: &str, table: &str, name: &str) -> io::Result<u64> {
        let out = self
            .command("nft")
            .args(["-j", "list", "counter", family, table, name])
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(
                String::from_utf8_lossy(&out.stderr).to_string(),
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| io::Error::other(format!("nft -j output: {e}")))?;
        v["nftables"]
            .as_array()
            .and_then(|a| a.iter().find_map(|o| o["counter"]["packets"].as_u64()))
            .ok_or_else(|| io::Error::other("no counter in nft output"))
    }

    /// A command that runs `program` inside this namespace (through `ip netns
    /// exec`, which also remounts /sys for the namespace, and execs without
    /// forking, so the child's pid is the program's pid).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        Self::command_for(&self.name, program)
    }

    /// Same as [`Netns::command`] in the peer namespace.
    pub fn peer_command(&self, program: impl AsRef<OsStr>) -> Command {
        Self::command_for(
            self.peer.as_deref().expect("namespace has no peer"),
            program,
        )
    }

    fn command_for(ns: &str, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }

    /// Spawns `program args...` inside the namespace with the given stdio.
    pub fn spawn_in<I, S>(
        &self,
        program: impl AsRef<OsStr>,
        args: I,
        stdout: Stdio,
        stderr: Stdio,
    ) -> io::Result<Child>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
    }

    /// Runs `f` on a new thread that has joined this namespace with
    /// `setns(CLONE_NEWNET)`: sockets it creates belong to the namespace (and
    /// stay there when used from other threads). Panics in `f` propagate.
    pub fn run_in_thread<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        run_in(&self.name, f)
    }

    /// Same as [`Netns::run_in_thread`] in the peer namespace.
    pub fn run_in_peer<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        run_in(self.peer.as_deref().expect("namespace has no peer"), f)
    }

    /// Reads a file under `/proc/net/` as seen from inside the namespace
    /// (`/proc/thread-self/net` of a thread that joined it; `/proc/self/net`
    /// would show the main thread's namespace).
    pub fn read_proc_net(&self, rel: &str) -> io::Result<String> {
        let rel = rel.to_string();
        self.run_in_thread(move || std::fs::read_to_string(format!("/proc/thread-self/net/{rel}")))
    }
}

fn run_in<F, R>(ns: &str, f: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: a valid namespace fd; setns only affects this thread,
            // which exits when `f` returns, so no other code runs in the
            // wrong namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
            drop(file);
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _g = NS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for ns in self.peer.iter().chain(std::iter::once(&self.name)) {
            kill_all_in(ns);
            // A killed process can still hold the namespace for a moment;
            // `ip netns del` only unmounts the name, the kernel frees the
            // namespace when the last process has gone, so one try is enough.
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("lab: cannot delete namespace {ns}: {e}");
            }
        }
    }
}
