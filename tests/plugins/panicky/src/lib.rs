//! PANICKY: panics on every record sent to UDP port `port`, passes the
//! rest; tests/plugins.rs checks the daemon contains it.

use rulogd_plugin_sdk::{export_filter, Config, Filter, Key, Opt, Record, Type, Verdict};

struct Panicky {
    port: u64,
}

impl Filter for Panicky {
    const NAME: &'static str = "PANICKY";
    const SUMMARY: &'static str = "Panics on records to UDP port `port` (a test plugin)";
    const INPUT_KEYS: &'static [Key] = &[Key::new("udp.dport", Type::U16).optional()];
    const OPTIONS: &'static [Opt] = &[Opt::int("port", "9", 1, 65535, "the port that panics")];

    fn configure(cfg: &Config) -> Result<Self, String> {
        Ok(Panicky {
            port: cfg.int("port") as u64,
        })
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        if rec.get_u64(0) == Some(self.port) {
            panic!("record to port {} (as asked)", self.port);
        }
        Verdict::Continue
    }
}

export_filter!(Panicky);
