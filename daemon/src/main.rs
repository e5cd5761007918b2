//! The `rulogd` binary: parse the command line and run.

fn main() {
    std::process::exit(rulogd::run(std::env::args().skip(1).collect()));
}
