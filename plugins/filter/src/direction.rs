//! DIRECTION: gives a record `flow.direction`, inbound / outbound /
//! internal / external (ECS `network.direction`), from its addresses and
//! the `home_net` prefixes. ulogd2 has no such filter; the name says what
//! it adds, and FLOW's `home_net` gives its own records the same key by the
//! same rule (rulogd_plugin::homenet), so packets, conntrack flows and
//! flows built from packets all carry one vocabulary.
//!
//! A conntrack or FLOW record is oriented by its original tuple (the
//! initiator is the source); a packet record (after BASE) by its sender.

use rulogd_plugin::homenet::check_home_net;
use rulogd_plugin::{
    key_table, Binding, BuildCtx, BuildError, Filter, HomeNet, KeyDef, KeyType, OptionDef, Record,
    Slot, Value, Verdict,
};
use std::net::IpAddr;

static OPTIONS: [OptionDef; 1] = [OptionDef::str(
    "home_net",
    "",
    "the home network: IPv4 and IPv6 prefixes, comma or space separated (e.g. \"10.0.0.0/8, 2001:db8::/32\")",
)
.mandatory()
.check(check_home_net)];

mod input {
    use rulogd_plugin::{key_table, KeyDef, KeyType};
    key_table! {
        /// NFCT's and FLOW's original tuple first, BASE's header after.
        pub(super) static INPUT_KEYS: [KeyDef; NIN];
        I_ORIG_SADDR = KeyDef::new("orig.ip.saddr", KeyType::IpAddr).optional();
        I_ORIG_DADDR = KeyDef::new("orig.ip.daddr", KeyType::IpAddr).optional();
        I_SADDR = KeyDef::new("ip.saddr", KeyType::IpAddr).optional();
        I_DADDR = KeyDef::new("ip.daddr", KeyType::IpAddr).optional();
    }
}
use input::*;

key_table! {
    /// The one output key.
    static KEYS: [KeyDef; NKEYS];
    K_DIRECTION = KeyDef::new("flow.direction", KeyType::String);
}

rulogd_plugin::plugin! {
    Filter "DIRECTION" (build): "flow.direction (inbound, outbound, internal, external) of a packet or flow by home_net";
    options &OPTIONS;
    input &INPUT_KEYS;
    output &KEYS;
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Filter>, BuildError> {
    let home = HomeNet::parse(ctx.options.str("home_net"))
        .map_err(|e| BuildError::option("home_net", e.to_string()))?;
    if home.is_empty() {
        return Err(BuildError::option(
            "home_net",
            "DIRECTION needs at least one prefix, e.g. home_net=\"192.168.0.0/16\"",
        ));
    }
    Ok(Box::new(DirectionFilter {
        home,
        inputs: [None; NIN],
        out: None,
    }))
}

struct DirectionFilter {
    home: HomeNet,
    inputs: [Option<Slot>; NIN],
    out: Option<Slot>,
}

fn ip_of(v: Option<&Value>) -> Option<IpAddr> {
    match v? {
        Value::Ipv4(a) => Some(IpAddr::V4(*a)),
        Value::Ipv6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

impl Filter for DirectionFilter {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        for (i, k) in INPUT_KEYS.iter().enumerate() {
            self.inputs[i] = b.input(&k.name);
        }
        self.out = b.output_if_active(K_DIRECTION);
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        let s = &self.inputs;
        let pair =
            |si: usize, di: usize| Some((ip_of(rec.get_opt(s[si]))?, ip_of(rec.get_opt(s[di]))?));
        // A record without addresses (ARP, nfacct) passes without the key.
        if let Some((src, dst)) = pair(I_ORIG_SADDR, I_ORIG_DADDR).or(pair(I_SADDR, I_DADDR)) {
            let d = self.home.direction(src, dst);
            rec.set_opt(self.out, Value::text(d.word().as_bytes()));
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Harness;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn harness(home: &str) -> Harness {
        Harness::with_options(REGISTRATION, &[("home_net", home)], |_| true, |_| true)
    }

    fn v4(s: &str) -> Value {
        Value::Ipv4(s.parse::<Ipv4Addr>().unwrap())
    }

    fn v6(s: &str) -> Value {
        Value::Ipv6(s.parse::<Ipv6Addr>().unwrap())
    }

    #[test]
    fn packets_get_the_direction_of_their_sender_to_their_receiver() {
        let mut h = harness("192.168.0.0/16 2001:db8::/32");
        for (s, d, want) in [
            (v4("192.168.1.1"), v4("9.9.9.9"), "outbound"),
            (v4("9.9.9.9"), v4("192.168.1.1"), "inbound"),
            (v4("192.168.1.1"), v4("192.168.2.2"), "internal"),
            (v4("9.9.9.9"), v4("8.8.8.8"), "external"),
            (v6("2001:db8::1"), v6("2001:4860::1"), "outbound"),
            (v6("2001:4860::1"), v6("2001:db8:ff::1"), "inbound"),
        ] {
            h.clear();
            h.set("ip.saddr", s);
            h.set("ip.daddr", d);
            assert_eq!(h.run(), Verdict::Continue);
            assert_eq!(h.out_text("flow.direction"), want);
        }
        h.clear();
        assert_eq!(h.run(), Verdict::Continue);
        assert!(h.out("flow.direction").is_none(), "no addresses, no key");
    }

    #[test]
    fn a_flow_record_is_oriented_by_its_original_tuple() {
        let mut h = harness("10.0.0.0/8");
        h.set("orig.ip.saddr", v4("10.1.1.1"));
        h.set("orig.ip.daddr", v4("1.1.1.1"));
        // A packet's header upstream says otherwise; the flow decides.
        h.set("ip.saddr", v4("1.1.1.1"));
        h.set("ip.daddr", v4("10.1.1.1"));
        h.run();
        assert_eq!(h.out_text("flow.direction"), "outbound");
    }

    #[test]
    fn home_net_is_checked() {
        let def = &OPTIONS[0];
        let o = rulogd_plugin::Options::default();
        let bad = rulogd_plugin::OptValue::Str("10.0.0.0/40".into());
        assert!(def.validate(&bad, &o).unwrap_err().contains("longer"));
        assert!(def.mandatory);
    }
}
