//! rulogd core: configuration, stack building, runtime, signals.
//!
//! The binary (`main.rs`) only calls [`run`]; everything else lives here so
//! tests can drive it.

pub mod cli;
pub mod config;
pub mod external;
pub mod info;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod process;
pub mod registry;
pub mod runtime;
pub mod stack;

use anyhow::{Context, Result};
use rulogd_plugin::{ProcessEnv, SharedRegistry};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The embedded default configuration (conf/rulogd.conf).
pub const DEFAULT_CONFIG: &str = include_str!("../../conf/rulogd.conf");

/// Where the embedded default writes; rulogd makes it when it runs on it.
pub const DEFAULT_LOG_DIR: &str = "/var/log/rulogd";

/// The name the embedded default goes by in messages.
const EMBEDDED_NAME: &str = "<embedded rulogd.conf>";

/// Where the default config is looked for before falling back to the embedded one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/rulogd.conf";

/// Loads the config named on the command line, or the default.
pub fn load_config(path: Option<&Path>) -> Result<config::Config, config::ConfigError> {
    match path {
        Some(p) => config::load(p),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
            config::load(Path::new(DEFAULT_CONFIG_PATH))
        }
        None => config::parse_ulogd(Path::new(EMBEDDED_NAME), DEFAULT_CONFIG),
    }
}

/// Plans and resolves every stack without opening anything.
pub fn check(cfg: &config::Config) -> Result<Vec<stack::Tree>, config::ConfigError> {
    let mut trees = stack::plan(cfg)?;
    stack::resolve(cfg, &mut trees)?;
    Ok(trees)
}

fn info(name: &str, config: Option<&Path>) -> i32 {
    if external::is_external(name) {
        return match external::load(Path::new(name)) {
            Ok(i) => {
                print!("{}", info::describe(i));
                0
            }
            Err(e) => {
                eprintln!("rulogd: plugin {name}: {e}");
                1
            }
        };
    }
    let n = registry::name_from_path(name);
    if registry::find(n).is_none() {
        // An external plugin by name: the config's plugin= lines say where.
        if let Some(Err(e)) =
            config.map(|c| config::load(c).and_then(|c| external::load_config_plugins(&c)))
        {
            eprintln!("rulogd: {e}");
            return 1;
        }
    }
    match registry::find(n) {
        Some(r) => {
            print!("{}", info::describe(r.info));
            0
        }
        None => {
            eprintln!(
                "rulogd: no plugin `{n}`; known plugins: {}",
                registry::names(None).join(", ")
            );
            1
        }
    }
}

/// Runs the daemon with `argv[1..]`; returns the exit code.
pub fn run(argv: Vec<String>) -> i32 {
    let args = match cli::parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rulogd: {e}");
            return 1;
        }
    };
    if args.help {
        print!("{}", cli::USAGE);
        return 0;
    }
    if args.version {
        println!("rulogd {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    if let Some(p) = &args.info {
        return info(p, args.config.as_deref());
    }
    logging::init(args.loglevel.unwrap_or(5));
    logging::set_mirror(args.verbose && !args.daemon);
    match start(&args) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            if !args.verbose {
                eprintln!("rulogd: {e:#}");
            }
            1
        }
    }
}

fn start(args: &cli::Args) -> Result<i32> {
    let cfg = load_config(args.config.as_deref()).map_err(anyhow::Error::new)?;
    if args.loglevel.is_none() {
        if let Some((l, line)) = cfg.loglevel {
            if !(1..=8).contains(&l) {
                return Err(anyhow::Error::new(
                    cfg.err(line, format!("loglevel {l} out of range 1..8")),
                ));
            }
            logging::set_threshold(l as u8);
        }
    }
    let mut trees = check(&cfg).map_err(anyhow::Error::new)?;
    if args.check {
        print!("{}", stack::describe(&cfg, &trees));
        println!("{}: OK", cfg.path.display());
        return Ok(0);
    }
    let ready = if args.daemon {
        Some(process::daemonize()?)
    } else {
        None
    };
    type Started = (
        runtime::Runtime,
        signal_hook::iterator::Signals,
        Arc<SharedRegistry>,
        Option<process::PidFile>,
    );
    let result = (|| -> Result<Started> {
        // First of all (after the fork of -d, before any thread): a SIGTERM
        // while the stacks are still being built is then a clean stop once
        // they run rather than the default action's kill, and an input that
        // finishes at once (a short capture file) stops the daemon with a
        // SIGTERM of its own.
        let signals = signal_hook::iterator::Signals::new(SIGNALS)
            .context("cannot install signal handlers")?;
        if let Some((lf, line)) = &cfg.logfile {
            logging::set_logfile(lf).with_context(|| {
                format!("{}:{line}: cannot open logfile {lf}", cfg.path.display())
            })?;
        }
        let pid = match &args.pidfile {
            Some(p) => Some(process::PidFile::create(p)?),
            None => None,
        };
        let owner = match &args.user {
            Some(u) => Some(process::lookup_user(u)?),
            None => None,
        };
        let shared = Arc::new(SharedRegistry::with_env(ProcessEnv {
            state_dir: Some(process::state_dir()),
            owner,
        }));
        if let (Some((lf, _)), Some(_)) = (&cfg.logfile, &args.user) {
            // SIGHUP reopens the daemon log as the -u user, as it does the
            // outputs' files.
            let p = Path::new(lf);
            if !matches!(lf.as_str(), "stdout" | "syslog") && p.is_file() {
                shared.hand_over_later(p.to_path_buf());
                shared.reopens_in(
                    p.parent().map(Path::to_path_buf).unwrap_or_default(),
                    format!("the daemon log {lf} is reopened after a rotation"),
                );
            }
        }
        if cfg.path == Path::new(EMBEDDED_NAME) && !Path::new(DEFAULT_LOG_DIR).exists() {
            std::fs::create_dir_all(DEFAULT_LOG_DIR).with_context(|| {
                format!("cannot make {DEFAULT_LOG_DIR} for the embedded default")
            })?;
            shared.hand_over_later(PathBuf::from(DEFAULT_LOG_DIR));
        }
        stack::instantiate(&cfg, &mut trees, &shared)?;
        stack::resolve(&cfg, &mut trees).map_err(anyhow::Error::new)?;
        stack::bind(&cfg, &mut trees)?;
        let metrics = match cfg.metrics {
            Some((a, line)) => Some(metrics::Endpoint::bind(a).with_context(|| {
                format!(
                    "{}:{line}: cannot listen on metrics_address {a} (another process on that port?)",
                    cfg.path.display()
                )
            })?),
            None => None,
        };
        if let Some(u) = &args.user {
            shared.hand_over_all().map_err(|(p, e)| {
                anyhow::anyhow!("cannot hand {} to user {u}: {e}", p.display())
            })?;
            process::drop_privileges(u)?;
            for (dir, what) in shared.reopen_dirs() {
                if let Err(e) = process::can_create_in(&dir) {
                    log::warn!(
                        "{what}, but user {u} cannot create files in {} ({e}): \
                         a reopen that must make a new file there fails until the \
                         directory, or a file made there for {u}, is writable by {u}",
                        dir.display()
                    );
                }
            }
        }
        for st in &cfg.stacks {
            log::info!("building new pluginstance stack: '{}'", st.text);
        }
        let rt = runtime::Runtime::start(trees, &shared).context("starting input threads")?;
        if let Some(ep) = metrics {
            let a = ep.local_addr()?;
            ep.serve(shared.clone())
                .context("starting the metrics thread")?;
            log::info!("metrics at http://{a}/metrics");
        }
        Ok((rt, signals, shared, pid))
    })();
    let (rt, signals, shared, pid) = match result {
        Ok(v) => v,
        Err(e) => {
            if let Some(r) = ready {
                r.fail(&format!("{e:#}"));
            }
            return Err(e);
        }
    };
    if let Some(r) = ready {
        r.ok();
    }
    log::warn!(
        "rulogd {} started: {} stack(s) from {}",
        env!("CARGO_PKG_VERSION"),
        cfg.stacks.len(),
        cfg.path.display()
    );
    // Every input thread runs, so every socket is bound: a packet logged
    // from now on is read.
    let notifier = notify::Notifier::from_env().map(Arc::new);
    if let Some(n) = &notifier {
        let main_pid = format!("READY=1\nMAINPID={}", std::process::id());
        if let Err(e) = n.send(&main_pid) {
            log::warn!("cannot notify the service manager: {e}");
        }
        if let Some(period) = notify::watchdog_period() {
            notify::start_watchdog(n.clone(), period, rt.beats.clone());
        }
    }
    Ok(serve(rt, signals, shared, pid, notifier))
}

fn log_stats(shared: &SharedRegistry, why: &str) {
    for s in shared.stats() {
        log::warn!("{why}: {}", s.line());
    }
}

/// Handles signals until the daemon stops; returns the exit code.
/// The signals the daemon handles.
const SIGNALS: [i32; 5] = [
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGUSR1,
    signal_hook::consts::SIGUSR2,
];

fn serve(
    rt: runtime::Runtime,
    mut signals: signal_hook::iterator::Signals,
    shared: Arc<SharedRegistry>,
    pid: Option<process::PidFile>,
    notifier: Option<Arc<notify::Notifier>>,
) -> i32 {
    let tell = |state: &str| {
        if let Some(n) = &notifier {
            let _ = n.send(state);
        }
    };
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let pid = Arc::new(Mutex::new(pid));
    let mut rt = Some(rt);
    for sig in signals.forever() {
        match sig {
            SIGTERM | SIGINT => {
                let Some(rt) = rt.take() else {
                    log::error!("second terminal signal: exiting without draining");
                    pid.lock().unwrap_or_else(|e| e.into_inner()).take();
                    std::process::exit(1);
                };
                log::warn!("terminal signal received, draining and exiting");
                tell("STOPPING=1");
                let (shared, pid) = (shared.clone(), pid.clone());
                std::thread::spawn(move || {
                    rt.shutdown(&shared);
                    log_stats(&shared, "exit");
                    pid.lock().unwrap_or_else(|e| e.into_inner()).take();
                    std::process::exit(0);
                });
            }
            SIGHUP => {
                log::warn!("SIGHUP received: reopening log and output files");
                if let Some(n) = &notifier {
                    let _ = n.reloading();
                }
                logging::reopen();
                for s in shared.services() {
                    s.reopen();
                }
                tell("READY=1");
            }
            SIGUSR1 => log_stats(&shared, "statistics"),
            SIGUSR2 => {
                if let Some(rt) = &rt {
                    rt.ctl
                        .usr2
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
    0
}

/// The path of a config for messages.
pub fn display_path(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| DEFAULT_CONFIG_PATH.into())
}
