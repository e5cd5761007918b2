//! PORTDROP: an external rulogd filter written with the Rust SDK. It drops
//! every record whose TCP or UDP source or destination port is in the
//! `ports` option (a comma-separated list); with an empty list it passes
//! everything, which makes it the pass-through plugin of the ABI benchmark.
//!
//! ```text
//! plugin="/path/librulogd_portdrop.so"
//! stack=log1:NFLOG,base1:BASE,drop1:PORTDROP,json1:JSON
//! [drop1]
//! ports="53,123"
//! ```

use rulogd_plugin_sdk::{export_filter, Config, Filter, Key, Opt, Record, Type, Verdict};

/// The ports to drop, as a bitmap of all 65536.
struct PortDrop {
    drop: Box<[u64; 1024]>,
    any: bool,
}

const PORT_KEYS: [usize; 4] = [0, 1, 2, 3];

impl Filter for PortDrop {
    const NAME: &'static str = "PORTDROP";
    const SUMMARY: &'static str = "Drops records whose TCP or UDP port is in `ports`";
    const INPUT_KEYS: &'static [Key] = &[
        Key::new("tcp.sport", Type::U16).optional(),
        Key::new("tcp.dport", Type::U16).optional(),
        Key::new("udp.sport", Type::U16).optional(),
        Key::new("udp.dport", Type::U16).optional(),
    ];
    const OPTIONS: &'static [Opt] = &[Opt::str(
        "ports",
        "",
        "comma-separated port numbers to drop (empty: drop nothing)",
    )];

    fn configure(cfg: &Config) -> Result<Self, String> {
        let mut drop = Box::new([0u64; 1024]);
        let mut any = false;
        for p in cfg
            .str("ports")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let n: u16 = p
                .parse()
                .map_err(|_| format!("ports: `{p}` is not a port number"))?;
            drop[n as usize / 64] |= 1 << (n % 64);
            any = true;
        }
        Ok(PortDrop { drop, any })
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        if !self.any {
            return Verdict::Continue;
        }
        for k in PORT_KEYS {
            if let Some(p) = rec.get_u64(k) {
                if self.drop[p as usize / 64 % 1024] & (1 << (p % 64)) != 0 {
                    return Verdict::Drop;
                }
            }
        }
        Verdict::Continue
    }
}

export_filter!(PortDrop);
