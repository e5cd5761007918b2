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
  -i, --info PLUGIN      describe a plugin (name such as JSON, or a ulogd .so path)
  -t, --check            check the config, print every stack with its key bindings, exit
  -h, --help             this text
  -V, --version          version
";

/// Parses `argv[1..]`.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        // ulogd accepts `-lN` glued as getopt does.
        let (flag, inline) = if !flag.starts_with("--") && flag.len() > 2 && flag.starts_with('-') {
            (flag[..2].to_string(), Some(flag[2..].to_string()))
        } else {
            (flag, inline)
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .ok_or_else(|| format!("option {name} needs a value")),
            }
        };
        match flag.as_str() {
            "-c" | "--configfile" => a.config = Some(PathBuf::from(value(&flag)?)),
            "-d" | "--daemon" => a.daemon = true,
            "-u" | "--uid" => a.user = Some(value(&flag)?),
            "-p" | "--pidfile" => a.pidfile = Some(PathBuf::from(value(&flag)?)),
            "-v" | "--verbose" => a.verbose = true,
            "-l" | "--loglevel" => {
                let v = value(&flag)?;
                let n: u8 = v.parse().map_err(|_| format!("invalid log level `{v}`"))?;
                if !(1..=8).contains(&n) {
                    return Err(format!("log level {n} out of range 1..8"));
                }
                a.loglevel = Some(n);
            }
            "-i" | "--info" => a.info = Some(value(&flag)?),
            "-t" | "--check" => a.check = true,
            "-h" | "--help" => a.help = true,
            "-V" | "--version" => a.version = true,
            other => return Err(format!("unknown option `{other}` (see rulogd -h)")),
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
