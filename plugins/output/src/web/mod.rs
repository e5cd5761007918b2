//! WEB: a live traffic view served by rulogd itself. Flow records (FLOW's,
//! or NFCT's) are counted into fixed time bins by direction (the ECS
//! `network.direction` word of `flow.direction`) and into bounded tallies
//! of hosts, services and conversations; a small page and JSON endpoints
//! on `address` show them, with the daemon's own counters.
//!
//! Memory is fixed by the options (bins, hosts, services), whatever the
//! traffic: a flood of distinct hosts replaces the lightest ones (counted
//! as `hosts_replaced`). The record path takes one uncontended lock and
//! does not allocate once the tallies are full.

pub mod agg;
mod http;
pub mod topk;

use agg::{addr, class_of, Agg, Flow};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, KeyDef, KeyType, OptValue, OptionDef, Options, Output,
    OutputError, Record, Slot, Value,
};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

/// `address` must be IP:PORT; anything but loopback needs a token.
fn check_address(v: &OptValue, all: &Options) -> Result<(), String> {
    let a: SocketAddr = v
        .to_string()
        .parse()
        .map_err(|_| format!("`{v}` is not IP:PORT (for example 127.0.0.1:8475 or [::1]:8475)"))?;
    if !a.ip().is_loopback() && all.str("token").is_empty() {
        return Err(format!(
            "{a} is reachable from other hosts: set token= (requests must then carry it) or use a loopback address"
        ));
    }
    Ok(())
}

static OPTIONS: [OptionDef; 7] = [
    OptionDef::str("address", "127.0.0.1:8475", "IP:PORT the page is served on (loopback unless a token is set)")
        .check(check_address),
    OptionDef::str("token", "", "a secret every request must carry (Authorization: Bearer, or ?token=); required for a non-loopback address"),
    OptionDef::int("bin_seconds", "10", "seconds per time bin of the series").range(1, 86_400),
    OptionDef::int("bins", "360", "time bins kept (with bin_seconds: the history shown)").range(1, 100_000),
    OptionDef::int("hosts", "1000", "hosts tallied at most (the lightest are replaced beyond)").range(1, 1_000_000),
    OptionDef::int("services", "256", "services and conversations tallied at most, each").range(1, 1_000_000),
    OptionDef::int("top", "10", "rows of each top list").range(1, 1000),
];

rulogd_plugin::key_table! {
    static INPUT: [KeyDef; N_INPUT];
    SADDR = KeyDef::new("orig.ip.saddr", KeyType::IpAddr).optional();
    DADDR = KeyDef::new("orig.ip.daddr", KeyType::IpAddr).optional();
    PROTO = KeyDef::new("orig.ip.protocol", KeyType::U8).optional();
    DPORT = KeyDef::new("orig.l4.dport", KeyType::U16).optional();
    OBYTES = KeyDef::new("orig.raw.pktlen", KeyType::U64).optional();
    OPKTS = KeyDef::new("orig.raw.pktcount", KeyType::U64).optional();
    RBYTES = KeyDef::new("reply.raw.pktlen", KeyType::U64).optional();
    RPKTS = KeyDef::new("reply.raw.pktcount", KeyType::U64).optional();
    START = KeyDef::new("flow.start.sec", KeyType::U32).optional();
    END = KeyDef::new("flow.end.sec", KeyType::U32).optional();
    SEQ = KeyDef::new("flow.seq", KeyType::U32).optional();
    DIRECTION = KeyDef::new("flow.direction", KeyType::String).optional();
    PREFIX = KeyDef::new("oob.prefix", KeyType::String).optional();
    PKTLEN = KeyDef::new("raw.pktlen", KeyType::U32).optional();
    TIME = KeyDef::new("oob.time.sec", KeyType::U32).optional();
}

rulogd_plugin::plugin! {
    Output "WEB" (build): "Serves a live traffic view of flow records: in/out of the home networks over time, top hosts, services and conversations";
    options &OPTIONS;
    input &INPUT;
}

/// One WEB instance.
pub struct Web {
    agg: Arc<Mutex<Agg>>,
    inputs: [Option<Slot>; 15],
    skipped: rulogd_plugin::Counter,
}

fn int(o: &Options, name: &str) -> usize {
    usize::try_from(o.int(name)).unwrap_or(1)
}

/// What the instances of one id share: one page, one set of tallies.
struct Shared {
    agg: Arc<Mutex<Agg>>,
    skipped: rulogd_plugin::Counter,
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    // The same id in several stacks (flows from one, logged packets from
    // another) is one page: the first build binds it.
    let key = format!("WEB {}", ctx.instance);
    let sh = ctx.shared.get_or_try_insert(&key, || start(ctx))?;
    Ok(Box::new(Web {
        agg: sh.agg.clone(),
        inputs: [None; 15],
        skipped: sh.skipped.clone(),
    }))
}

fn start(ctx: &BuildCtx) -> Result<Arc<Shared>, BuildError> {
    let o = ctx.options;
    let address: SocketAddr = o
        .str("address")
        .parse()
        .map_err(|_| BuildError::option("address", "not IP:PORT"))?;
    let agg = Arc::new(Mutex::new(Agg::new(
        o.int("bin_seconds") as u64,
        int(o, "bins"),
        int(o, "hosts"),
        int(o, "services"),
    )));
    let listener = TcpListener::bind(address)
        .map_err(|e| BuildError::io(format!("WEB: binding {address}"), e))?;
    let stats = rulogd_plugin::StatSet::new(format!("{} (WEB)", ctx.instance));
    let skipped = stats.counter("skipped");
    ctx.shared.add_stats(stats);
    let token = o.str("token");
    let site = Arc::new(http::Site {
        name: ctx.instance.to_string(),
        agg: agg.clone(),
        stats: ctx.shared.stats_view(),
        token: (!token.is_empty()).then(|| token.to_string()),
        top: int(o, "top"),
    });
    log::info!(
        "{} (WEB): serving the traffic view on http://{}/",
        ctx.instance,
        listener.local_addr().unwrap_or(address)
    );
    http::serve(listener, site).map_err(|e| BuildError::io("WEB: starting its thread", e))?;
    Ok(Arc::new(Shared { agg, skipped }))
}

fn ip(rec: &Record, s: Option<Slot>) -> Option<std::net::IpAddr> {
    match rec.get_opt(s)? {
        Value::Ipv4(a) => Some((*a).into()),
        Value::Ipv6(a) => Some((*a).into()),
        _ => None,
    }
}

impl Web {
    fn u(&self, rec: &Record, k: usize) -> u64 {
        rec.get_u64(self.inputs[k]).unwrap_or(0)
    }
}

impl Output for Web {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        for (i, k) in INPUT.iter().enumerate() {
            self.inputs[i] = b.input(&k.name);
        }
        Ok(())
    }

    fn write(&mut self, rec: &Record) -> Result<(), OutputError> {
        let (Some(s), Some(d)) = (ip(rec, self.inputs[SADDR]), ip(rec, self.inputs[DADDR])) else {
            // A logged packet counts under its log prefix; anything else
            // (an nfacct counter) has nothing to show.
            match rec.get_bytes(self.inputs[PREFIX]) {
                Some(p) => {
                    let time = rec
                        .get_u64(self.inputs[TIME])
                        .unwrap_or_else(|| u64::from(rulogd_plugin::now_sec_usec().0));
                    let bytes = self.u(rec, PKTLEN);
                    self.agg
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .packet(p, bytes, time);
                }
                None => self.skipped.inc(),
            }
            return Ok(());
        };
        // Conntrack without timestamps has no flow times: now, then.
        let end = rec
            .get_u64(self.inputs[END])
            .unwrap_or_else(|| u64::from(rulogd_plugin::now_sec_usec().0));
        let start = rec.get_u64(self.inputs[START]).unwrap_or(end);
        let class = rec
            .get_bytes(self.inputs[DIRECTION])
            .map_or(agg::CLASSES.len() - 1, class_of);
        let f = Flow {
            src: addr(s),
            dst: addr(d),
            proto: self.u(rec, PROTO) as u8,
            dport: self.u(rec, DPORT) as u16,
            orig: (self.u(rec, OBYTES), self.u(rec, OPKTS)),
            reply: (self.u(rec, RBYTES), self.u(rec, RPKTS)),
            start,
            end,
            seq: self.u(rec, SEQ) as u32,
            class,
        };
        self.agg.lock().unwrap_or_else(|e| e.into_inner()).add(&f);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reachable_address_needs_a_token() {
        let mut o = Options::defaults(&OPTIONS).unwrap();
        let v = |s: &str| OptValue::Str(s.into());
        assert!(check_address(&v("127.0.0.1:8475"), &o).is_ok());
        assert!(check_address(&v("[::1]:8475"), &o).is_ok());
        assert!(check_address(&v("localhost:8475"), &o)
            .unwrap_err()
            .contains("IP:PORT"));
        let e = check_address(&v("0.0.0.0:8475"), &o).unwrap_err();
        assert!(e.contains("token="), "{e}");
        o.set(&OPTIONS[1], "s3cret", 3).unwrap();
        assert!(check_address(&v("0.0.0.0:8475"), &o).is_ok());
    }
}
