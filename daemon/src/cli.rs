//! The command line, as ulogd2's (getopt_long style) plus `-t/--check`.

use std::path::PathBuf;

/// Parsed command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `-c/--configfile`.
    pub config: Option<PathBuf>,
    /// `-d/--daemon`.
    pub daemon: bool,
    /// `-u/--uid`.
    pub user: Option<String>,
    /// `-p/--pidfile`.
    pub pidfile: Option<PathBuf>,
    /// `-v/--verbose`.
    pub verbose: bool,
    /// `-l/--loglevel`.
    pub loglevel: Option<u8>,
    /// `-i/--info PLUGIN`.
    pub info: Option<String>,
    /// `-t/--check`.
    pub check: bool,
    /// `-h/--help`.
    pub help: bool,
    /// `-V/--version`.
    pub version: bool,
}

/// The `-h` text.
pub const USAGE: &str = "\
Usage: rulogd [OPTIONS]
Netfilter userspace logging daemon (a drop-in successor to ulogd2)

  -c, --configfile FILE  read FILE (ulogd.conf syntax, or TOML if it ends in .toml);
                         default /etc/rulogd.conf, else the embedded default
  -d, --daemon           fork into the background once the stacks are running
  -u, --uid USER         drop privileges to USER after opening sockets and files
  -p, --pidfile FILE     write the pid to FILE (refuses to start if another holds it)
  -v, --verbose          mirror log lines to stderr
  -l, --loglevel N       log level: 1 debug, 3 info, 5 notice (default), 7 error, 8 fatal
  -i, --info PLUGIN      describe a plugin (name such as JSON, a ulogd .so path, or a plugin file)
  -t, --check            check the config, print every stack with its key bindings, exit
  -h, --help             this text
  -V, --version          version
";

/// The long options, as getopt_long knows them: name, short letter.
const LONG: &[(&str, char)] = &[
    ("configfile", 'c'),
    ("daemon", 'd'),
    ("uid", 'u'),
    ("pidfile", 'p'),
    ("verbose", 'v'),
    ("loglevel", 'l'),
    ("info", 'i'),
    ("check", 't'),
    ("help", 'h'),
    ("version", 'V'),
];

/// The short letter of a long option, accepting an unambiguous prefix as
/// getopt_long does (`--conf` is `--configfile`, `--ver` is ambiguous).
fn long_letter(given: &str) -> Result<char, String> {
    if let Some((_, c)) = LONG.iter().find(|(n, _)| *n == given) {
        return Ok(*c);
    }
    let hits: Vec<&(&str, char)> = LONG.iter().filter(|(n, _)| n.starts_with(given)).collect();
    match hits.as_slice() {
        [(_, c)] => Ok(*c),
        [] => Err(format!("unknown option `--{given}` (see rulogd -h)")),
        many => {
            let names: Vec<String> = many.iter().map(|(n, _)| format!("--{n}")).collect();
            Err(format!(
                "option `--{given}` is ambiguous: {} (see rulogd -h)",
                names.join(", ")
            ))
        }
    }
}

fn text(v: std::ffi::OsString, opt: &str) -> Result<String, String> {
    v.into_string()
        .map_err(|v| format!("option {opt}: value {v:?} is not valid UTF-8"))
}

/// Parses `argv[1..]` with getopt_long's rules: bundled flags (`-vt`), a
/// value glued or separate (`-cFILE`, `-c FILE`, `-tc FILE`), `--opt=value`
/// or `--opt value`, and unambiguous long prefixes (`--conf`).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, String> {
    use lexopt::Arg;
    let mut a = Args::default();
    let mut p = lexopt::Parser::from_args(args);
    let fail = |e: lexopt::Error| format!("{e} (see rulogd -h)");
    while let Some(arg) = p.next().map_err(fail)? {
        let (letter, shown) = match arg {
            Arg::Short(c) => (c, format!("-{c}")),
            Arg::Long(l) => (long_letter(l)?, format!("--{l}")),
            Arg::Value(v) => {
                return Err(format!(
                    "unexpected argument {v:?}: rulogd takes options only (see rulogd -h)"
                ))
            }
        };
        let mut value = || -> Result<String, String> {
            let v = p
                .value()
                .map_err(|_| format!("option {shown} needs a value"))?;
            text(v, &shown)
        };
        match letter {
            'c' => a.config = Some(PathBuf::from(value()?)),
            'd' => a.daemon = true,
            'u' => a.user = Some(value()?),
            'p' => a.pidfile = Some(PathBuf::from(value()?)),
            'v' => a.verbose = true,
            'l' => {
                let v = value()?;
                let n: u8 = v.parse().map_err(|_| format!("invalid log level `{v}`"))?;
                if !(1..=8).contains(&n) {
                    return Err(format!("log level {n} out of range 1..8"));
                }
                a.loglevel = Some(n);
            }
            'i' => a.info = Some(value()?),
            't' => a.check = true,
            'h' => {
                // ulogd declares `h::`: an argument glued to -h (or given as
                // --help=X) is taken and ignored rather than read as flags.
                let _ = p.optional_value();
                a.help = true;
            }
            'V' => a.version = true,
            other => return Err(format!("unknown option `-{other}` (see rulogd -h)")),
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<Args, String> {
        parse(v.iter().map(|s| s.to_string()))
    }

    fn path(s: &str) -> Option<&std::path::Path> {
        Some(std::path::Path::new(s))
    }

    #[test]
    fn bundled_short_flags_are_each_read() {
        let a = p(&["-vt", "-c", "/x.conf"]).unwrap();
        assert!(a.verbose && a.check, "{a:?}");
        assert_eq!(a.config.as_deref(), path("/x.conf"));
        let a = p(&["-dv"]).unwrap();
        assert!(a.daemon && a.verbose, "{a:?}");
        let a = p(&["-tvd"]).unwrap();
        assert!(a.check && a.verbose && a.daemon, "{a:?}");
    }

    #[test]
    fn a_value_option_ends_a_bundle() {
        let a = p(&["-tc", "/x.conf"]).unwrap();
        assert!(a.check);
        assert_eq!(a.config.as_deref(), path("/x.conf"));
        let a = p(&["-tc/y.conf"]).unwrap();
        assert!(a.check);
        assert_eq!(a.config.as_deref(), path("/y.conf"));
        let a = p(&["-vl3"]).unwrap();
        assert!(a.verbose);
        assert_eq!(a.loglevel, Some(3));
        let a = p(&["-c/z.conf"]).unwrap();
        assert_eq!(a.config.as_deref(), path("/z.conf"));
        // As getopt: the rest of the bundle is the value, not more flags.
        let a = p(&["-ct"]).unwrap();
        assert_eq!(a.config.as_deref(), path("t"));
        assert!(!a.check);
        assert!(p(&["-tc"]).unwrap_err().contains("-c needs a value"));
    }

    #[test]
    fn long_forms_with_equals_space_and_prefixes() {
        let a = p(&["--configfile=/a.conf", "--check"]).unwrap();
        assert_eq!(a.config.as_deref(), path("/a.conf"));
        assert!(a.check);
        let a = p(&["--configfile", "/b.conf"]).unwrap();
        assert_eq!(a.config.as_deref(), path("/b.conf"));
        let a = p(&["--conf", "/c.conf", "--verb", "--pid=/run/x", "--lo", "7"]).unwrap();
        assert_eq!(a.config.as_deref(), path("/c.conf"));
        assert!(a.verbose);
        assert_eq!(a.pidfile.as_deref(), path("/run/x"));
        assert_eq!(a.loglevel, Some(7));
        assert!(p(&["--vers"]).unwrap().version);
        assert!(p(&["--d"]).unwrap().daemon);
        assert_eq!(p(&["--u=nobody"]).unwrap().user.as_deref(), Some("nobody"));
        assert_eq!(p(&["--in", "JSON"]).unwrap().info.as_deref(), Some("JSON"));
        assert!(p(&["--che"]).unwrap().check);
        let e = p(&["--ver"]).unwrap_err();
        assert!(
            e.contains("ambiguous") && e.contains("--version") && e.contains("--verbose"),
            "{e}"
        );
        let e = p(&["--c", "x"]).unwrap_err();
        assert!(e.contains("ambiguous"), "{e}");
        assert!(p(&["--nosuch"])
            .unwrap_err()
            .contains("unknown option `--nosuch`"));
        assert!(p(&["--check=1"]).is_err());
        assert!(p(&["--configfile"]).unwrap_err().contains("needs a value"));
    }

    #[test]
    fn help_takes_an_optional_glued_argument_like_ulogd() {
        assert!(p(&["-h"]).unwrap().help);
        assert!(p(&["-hx"]).unwrap().help);
        assert!(p(&["--help=all"]).unwrap().help);
        assert!(p(&["--he"]).unwrap().help);
        assert!(p(&["-Vh"]).unwrap().version);
    }

    #[test]
    fn stray_words_and_unknown_letters_are_refused() {
        assert!(p(&["-x"]).unwrap_err().contains("unknown option `-x`"));
        assert!(p(&["-vx"]).unwrap_err().contains("`-x`"));
        assert!(p(&["/etc/ulogd.conf"])
            .unwrap_err()
            .contains("unexpected argument"));
        assert!(p(&["-l", "abc"]).unwrap_err().contains("invalid log level"));
        assert!(p(&["-l0"]).unwrap_err().contains("out of range"));
    }

    #[test]
    fn ulogd_forms() {
        let a = p(&[
            "-c",
            "/x.conf",
            "-v",
            "-l3",
            "--pidfile=/run/p",
            "-u",
            "nobody",
            "-d",
        ])
        .unwrap();
        assert_eq!(a.config.as_deref(), Some(std::path::Path::new("/x.conf")));
        assert!(a.verbose && a.daemon);
        assert_eq!(a.loglevel, Some(3));
        assert_eq!(a.pidfile.as_deref(), Some(std::path::Path::new("/run/p")));
        assert_eq!(a.user.as_deref(), Some("nobody"));
        assert_eq!(
            p(&["--info", "JSON"]).unwrap().info.as_deref(),
            Some("JSON")
        );
        assert!(p(&["-t"]).unwrap().check);
        assert!(p(&["-x"]).is_err());
        assert!(p(&["-c"]).is_err());
        assert!(p(&["-l", "9"]).is_err());
    }
}
