//! FLOW: turns packet records (after BASE) into bidirectional flow records
//! with NFCT's key names, so everything that takes conntrack flows takes
//! flows built from packets. Each packet stops here (Drop); the flow
//! records go down the stack instead, through the core's emitting-filter
//! hook. Time is the packets' own (oob.time.*), so a replayed capture file
//! expires its flows as the live link would have.

mod decode;
pub mod frag;
pub mod fuzz;
mod hash;
mod options;
pub mod table;
pub mod types;

use decode::{addr_value, ip_addr, own_decode_map, packet_from, OwnDecode, OWN_INPUTS};
use frag::FragCache;
use options::OPTIONS;
use rulogd_plugin::{
    key_table, Above, Binding, BuildCtx, BuildError, Counter, Filter, HomeNet, KeyDef, KeyType,
    Record, Signal, Slot, StatSet, Value, Verdict,
};
use std::borrow::Cow;
use std::time::Instant;
use table::{Dir, FlowTable, Kind, Packet, Report, Usec};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Its own module: each key table declares an index enum of its own.
mod input {
    use rulogd_plugin::{key_table, KeyDef, KeyType};
    key_table! {
        /// The input keys (BASE's and the packet input's); all optional, a
        /// packet without addresses is dropped uncounted.
        pub(super) static INPUT_KEYS: [KeyDef; NIN];
        I_FAMILY = KeyDef::new("oob.family", KeyType::U8).optional();
        I_SADDR = KeyDef::new("ip.saddr", KeyType::IpAddr).optional();
        I_DADDR = KeyDef::new("ip.daddr", KeyType::IpAddr).optional();
        I_PROTO = KeyDef::new("ip.protocol", KeyType::U8).optional();
        I_TOTLEN = KeyDef::new("ip.totlen", KeyType::U16).optional();
        I_PLEN6 = KeyDef::new("ip6.payloadlen", KeyType::U16).optional();
        I_TSPORT = KeyDef::new("tcp.sport", KeyType::U16).optional();
        I_TDPORT = KeyDef::new("tcp.dport", KeyType::U16).optional();
        I_USPORT = KeyDef::new("udp.sport", KeyType::U16).optional();
        I_UDPORT = KeyDef::new("udp.dport", KeyType::U16).optional();
        I_FIN = KeyDef::new("tcp.fin", KeyType::Bool).optional();
        I_SYN = KeyDef::new("tcp.syn", KeyType::Bool).optional();
        I_RST = KeyDef::new("tcp.rst", KeyType::Bool).optional();
        I_PSH = KeyDef::new("tcp.psh", KeyType::Bool).optional();
        I_ACK = KeyDef::new("tcp.ack", KeyType::Bool).optional();
        I_URG = KeyDef::new("tcp.urg", KeyType::Bool).optional();
        I_ICMP_TYPE = KeyDef::new("icmp.type", KeyType::U8).optional();
        I_ICMP_CODE = KeyDef::new("icmp.code", KeyType::U8).optional();
        I_ICMP_ID = KeyDef::new("icmp.echoid", KeyType::U16).optional();
        I_ICMP6_TYPE = KeyDef::new("icmpv6.type", KeyType::U8).optional();
        I_ICMP6_CODE = KeyDef::new("icmpv6.code", KeyType::U8).optional();
        I_ICMP6_ID = KeyDef::new("icmpv6.echoid", KeyType::U16).optional();
        I_NEXTHDR = KeyDef::new("ip6.nexthdr", KeyType::U8).optional();
    I_IPID = KeyDef::new("ip.id", KeyType::U16).optional();
    I_FRAGOFF = KeyDef::new("ip.fragoff", KeyType::U16).optional();
    I_FRAGOFF6 = KeyDef::new("ip6.fragoff", KeyType::U16).optional();
    I_FRAGID6 = KeyDef::new("ip6.fragid", KeyType::U32).optional();
    I_SEC = KeyDef::new("oob.time.sec", KeyType::U32).optional();
        I_USEC = KeyDef::new("oob.time.usec", KeyType::U32).optional();
        I_VLAN = KeyDef::new("oob.vlan", KeyType::U16).optional();
    }
}
use input::*;

key_table! {
    /// The output keys: NFCT's names and types where the meaning is the
    /// same, then FLOW's own.
    static KEYS: [KeyDef; NKEYS];
    K_ORIG_SADDR = KeyDef::new("orig.ip.saddr", KeyType::IpAddr).ipfix(0, 8);
    K_ORIG_DADDR = KeyDef::new("orig.ip.daddr", KeyType::IpAddr).ipfix(0, 12);
    K_ORIG_PROTO = KeyDef::new("orig.ip.protocol", KeyType::U8).ipfix(0, 4);
    K_ORIG_SPORT = KeyDef::new("orig.l4.sport", KeyType::U16).ipfix(0, 7);
    K_ORIG_DPORT = KeyDef::new("orig.l4.dport", KeyType::U16).ipfix(0, 11);
    K_ORIG_BYTES = KeyDef::new("orig.raw.pktlen", KeyType::U64).ipfix(0, 85);
    K_ORIG_PKTS = KeyDef::new("orig.raw.pktcount", KeyType::U64).ipfix(0, 86);
    K_REPLY_SADDR = KeyDef::new("reply.ip.saddr", KeyType::IpAddr).ipfix(0, 8);
    K_REPLY_DADDR = KeyDef::new("reply.ip.daddr", KeyType::IpAddr).ipfix(0, 12);
    K_REPLY_PROTO = KeyDef::new("reply.ip.protocol", KeyType::U8).ipfix(0, 4);
    K_REPLY_SPORT = KeyDef::new("reply.l4.sport", KeyType::U16).ipfix(0, 7);
    K_REPLY_DPORT = KeyDef::new("reply.l4.dport", KeyType::U16).ipfix(0, 11);
    K_REPLY_BYTES = KeyDef::new("reply.raw.pktlen", KeyType::U64).ipfix(0, 85);
    K_REPLY_PKTS = KeyDef::new("reply.raw.pktcount", KeyType::U64).ipfix(0, 86);
    K_ICMP_CODE = KeyDef::new("icmp.code", KeyType::U8).ipfix(0, 177);
    K_ICMP_TYPE = KeyDef::new("icmp.type", KeyType::U8).ipfix(0, 176);
    K_ICMPV6_CODE = KeyDef::new("icmpv6.code", KeyType::U8).ipfix(0, 179);
    K_ICMPV6_TYPE = KeyDef::new("icmpv6.type", KeyType::U8).ipfix(0, 178);
    K_START_SEC = KeyDef::new("flow.start.sec", KeyType::U32).ipfix(0, 150);
    K_START_USEC = KeyDef::new("flow.start.usec", KeyType::U32).ipfix(0, 154);
    K_END_SEC = KeyDef::new("flow.end.sec", KeyType::U32).ipfix(0, 151);
    K_END_USEC = KeyDef::new("flow.end.usec", KeyType::U32).ipfix(0, 151);
    K_FAMILY = KeyDef::new("oob.family", KeyType::U8);
    K_PROTOCOL = KeyDef::new("oob.protocol", KeyType::U8);
    // NFCT's event types: an update record is an UPDATE, an end a DESTROY.
    K_EVENT = KeyDef::new("ct.event", KeyType::U32);
    K_FLOW_ID = KeyDef::new("flow.id", KeyType::U64).ipfix(0, 148);
    K_FLOW_SEQ = KeyDef::new("flow.seq", KeyType::U32);
    K_FLOW_TYPE = KeyDef::new("flow.type", KeyType::String);
    K_END_REASON = KeyDef::new("flow.end_reason", KeyType::String);
    K_GUESSED = KeyDef::new("flow.guessed", KeyType::Bool);
    K_ORIG_FLAGS = KeyDef::new("orig.tcp.flags", KeyType::U8).ipfix(0, 6);
    K_REPLY_FLAGS = KeyDef::new("reply.tcp.flags", KeyType::U8);
    // Part of the flow key: one 5-tuple on two VLANs is two flows.
    K_VLAN = KeyDef::new("oob.vlan", KeyType::U16).ipfix(0, 58);
    // With home_net: DIRECTION's key, by the same rule.
    K_DIRECTION = KeyDef::new("flow.direction", KeyType::String);
    // With unidirectional: whether this record is the responder's half.
    K_REVERSED = KeyDef::new("flow.reversed", KeyType::Bool);
}

rulogd_plugin::plugin! {
    Filter "FLOW" (build): "aggregates packet records into bidirectional flow records (NFCT's keys)";
    options &OPTIONS;
    input &INPUT_KEYS;
    output &KEYS;
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Filter>, BuildError> {
    Ok(Box::new(build_flow(ctx)?))
}

fn build_flow(ctx: &BuildCtx) -> Result<FlowFilter, BuildError> {
    let to = options::timeouts(ctx.options);
    let max_flows = ctx.options.int("max_flows") as usize;
    let emergency = options::emergency(ctx.options, &to, max_flows)?;
    let set = StatSet::new(format!("{} (FLOW)", ctx.instance));
    let c = Counters {
        flows: set.gauge("flows"),
        created: set.counter("flows_created"),
        updates: set.counter("update_records"),
        ended: [
            set.counter("ended_idle"),
            set.counter("ended_fin"),
            set.counter("ended_rst"),
            set.counter("evicted"),
            set.counter("ended_forced"),
            set.counter("ended_max_life"),
        ],
        emergency: set.gauge("emergency"),
        emergencies: set.counter("emergencies"),
        emergency_ended: set.counter("ended_in_emergency"),
    };
    ctx.shared.add_stats(set);
    let home = HomeNet::parse(ctx.options.str("home_net"))
        .map_err(|e| BuildError::option("home_net", e.to_string()))?;
    Ok(FlowFilter {
        home: (!home.is_empty()).then_some(home),
        table: {
            let mut t = FlowTable::new(to, max_flows);
            t.set_start_records(ctx.options.int("start_records") != 0);
            if let Some(e) = emergency {
                t.set_emergency(e);
            }
            t
        },
        inputs: [None; NIN],
        out: [None; NKEYS],
        last_wall: None,
        clock_moved: false,
        frags: FragCache::new(4096),
        counters: c,
        publish_when_drained: false,
        unidirectional: ctx.options.int("unidirectional") != 0,
        second_half: None,
        was_emergency: false,
        name: ctx.instance.to_string(),
        own: None,
    })
}

struct Counters {
    flows: Counter,
    created: Counter,
    updates: Counter,
    ended: [Counter; 6],
    emergency: Counter,
    emergencies: Counter,
    emergency_ended: Counter,
}

struct FlowFilter {
    /// `home_net`, when set.
    home: Option<HomeNet>,
    table: FlowTable,
    inputs: [Option<Slot>; NIN],
    out: [Option<Slot>; NKEYS],
    /// The table's clock and the wall clock when it last moved with a
    /// packet: a quiet link's time goes on from there.
    last_wall: Option<(Usec, Instant)>,
    frags: FragCache,
    counters: Counters,
    /// A packet moved the table's clock since the last tick.
    clock_moved: bool,
    /// `finish` ends the flows as they are taken: the counters are
    /// published once the last is.
    publish_when_drained: bool,
    /// One record per direction.
    unidirectional: bool,
    /// Unidirectional: the responder's half of the last report, taken next.
    second_half: Option<Report>,
    /// Emergency mode at the last tick, to log its changes once.
    was_emergency: bool,
    /// The instance, for messages.
    name: String,
    /// Decoding the packet itself, in place of the BASE right above.
    own: Option<OwnDecode>,
}

impl FlowFilter {
    fn packet_of(&mut self, rec: &Record) -> Option<Packet> {
        let s = &self.inputs;
        let Some(own) = self.own.as_mut() else {
            return packet_from(&mut self.frags, |i| rec.get_opt(s[i]));
        };
        let data = rec.get_bytes(own.pkt).unwrap_or(&[]);
        let pktlen = rec.get_u64(own.pktlen).unwrap_or(0);
        let family = rec.get_u64(s[I_FAMILY]).unwrap_or(0) as u8;
        let protocol = rec.get_u64(own.protocol).unwrap_or(0) as u16;
        own.dec.decode(data, pktlen, family, protocol);
        let (dec, map) = (&own.dec, &own.map);
        packet_from(&mut self.frags, |i| match map[i] {
            Some(k) => dec.get(k),
            None => rec.get_opt(s[i]),
        })
    }

    /// Fills a record of `r`; `half`: unidirectional, `Some(reversed)`,
    /// with the orig.* keys only.
    fn fill(&self, r: &Report, half: Option<bool>, rec: &mut Record) {
        let o = &self.out;
        let k = &r.key;
        let ((is, ip), (rs, rp)) = if r.init_is_a {
            ((&k.a, k.pa), (&k.b, k.pb))
        } else {
            ((&k.b, k.pb), (&k.a, k.pa))
        };
        let fam = k.family;
        let bi = half.is_none();
        rec.set_opt(o[K_ORIG_SADDR], addr_value(fam, is));
        rec.set_opt(o[K_ORIG_DADDR], addr_value(fam, rs));
        rec.set_opt(o[K_ORIG_PROTO], Value::U8(k.proto));
        if bi {
            rec.set_opt(o[K_REPLY_SADDR], addr_value(fam, rs));
            rec.set_opt(o[K_REPLY_DADDR], addr_value(fam, is));
            rec.set_opt(o[K_REPLY_PROTO], Value::U8(k.proto));
        }
        if k.proto == 6 || k.proto == 17 {
            rec.set_opt(o[K_ORIG_SPORT], Value::U16(ip));
            rec.set_opt(o[K_ORIG_DPORT], Value::U16(rp));
            if bi {
                rec.set_opt(o[K_REPLY_SPORT], Value::U16(rp));
                rec.set_opt(o[K_REPLY_DPORT], Value::U16(ip));
            }
        }
        if k.proto == 6 {
            rec.set_opt(o[K_ORIG_FLAGS], Value::U8(r.orig.flags));
            if bi {
                rec.set_opt(o[K_REPLY_FLAGS], Value::U8(r.reply.flags));
            }
        }
        rec.set_opt(o[K_ORIG_PKTS], Value::U64(r.orig.pkts));
        rec.set_opt(o[K_ORIG_BYTES], Value::U64(r.orig.bytes));
        if bi {
            rec.set_opt(o[K_REPLY_PKTS], Value::U64(r.reply.pkts));
            rec.set_opt(o[K_REPLY_BYTES], Value::U64(r.reply.bytes));
        }
        if let Some(rev) = half {
            rec.set_opt(o[K_REVERSED], Value::Bool(rev));
        }
        if let Some((t, c)) = r.icmp {
            let (kt, kc) = if k.proto == 58 {
                (K_ICMPV6_TYPE, K_ICMPV6_CODE)
            } else {
                (K_ICMP_TYPE, K_ICMP_CODE)
            };
            rec.set_opt(o[kt], Value::U8(t));
            rec.set_opt(o[kc], Value::U8(c));
        }
        rec.set_opt(o[K_START_SEC], Value::U32((r.start / 1_000_000) as u32));
        rec.set_opt(o[K_START_USEC], Value::U32((r.start % 1_000_000) as u32));
        rec.set_opt(o[K_END_SEC], Value::U32((r.end / 1_000_000) as u32));
        rec.set_opt(o[K_END_USEC], Value::U32((r.end % 1_000_000) as u32));
        rec.set_opt(o[K_FAMILY], Value::U8(fam));
        rec.set_opt(o[K_PROTOCOL], Value::U8(0));
        rec.set_opt(o[K_FLOW_ID], Value::U64(r.id));
        rec.set_opt(o[K_FLOW_SEQ], Value::U32(r.seq));
        let ty: &[u8] = match r.kind {
            Kind::Start => b"start",
            Kind::Update => b"update",
            Kind::End => b"end",
        };
        rec.set_opt(o[K_FLOW_TYPE], Value::text(ty));
        let event = match r.kind {
            Kind::Start => 1,
            Kind::Update => 2,
            Kind::End => 4,
        };
        rec.set_opt(o[K_EVENT], Value::U32(event));
        if r.kind != Kind::Start {
            rec.set_opt(o[K_END_REASON], Value::text(r.reason.word().as_bytes()));
        }
        rec.set_opt(o[K_GUESSED], Value::Bool(r.guessed));
        if k.vlan != 0 {
            rec.set_opt(o[K_VLAN], Value::U16(k.vlan));
        }
        if let Some(h) = &self.home {
            let d = h.direction(ip_addr(fam, is), ip_addr(fam, rs));
            rec.set_opt(o[K_DIRECTION], Value::text(d.word().as_bytes()));
        }
    }

    fn publish(&self) {
        let st = &self.table.stats;
        self.counters.flows.set(self.table.len() as u64);
        self.counters.created.set(st.created);
        self.counters.updates.set(st.updates);
        for (c, v) in self.counters.ended.iter().zip(st.ended) {
            c.set(v);
        }
        self.counters
            .emergency
            .set(u64::from(self.table.in_emergency()));
        self.counters.emergencies.set(st.emergencies);
        self.counters.emergency_ended.set(st.emergency_ended);
    }
}

/// Unidirectional mode: a report as the initiator's half and the
/// responder's, each as a one-direction report (its sender the initiator,
/// its counts in `orig`). A half without packets is left out, unless both
/// are empty (an end with nothing new since the last update): then the
/// initiator's half alone says the flow ended. The first comes with
/// whether it is the responder's.
fn halves(r: &Report) -> ((Report, bool), Option<Report>) {
    let fwd = Report {
        reply: Dir::default(),
        ..*r
    };
    // ICMP echo: the reply's type is the responder's.
    let icmp = match r.icmp {
        Some((8, c)) => Some((0, c)),
        Some((128, c)) => Some((129, c)),
        x => x,
    };
    let rev = Report {
        init_is_a: !r.init_is_a,
        orig: r.reply,
        reply: Dir::default(),
        icmp,
        ..*r
    };
    match (r.orig.pkts > 0, r.reply.pkts > 0) {
        (_, false) => ((fwd, false), None),
        (false, true) => ((rev, true), None),
        (true, true) => ((fwd, false), Some(rev)),
    }
}

impl Filter for FlowFilter {
    fn plan_inputs(&mut self, above: &[Above<'_>]) -> Option<Cow<'static, [KeyDef]>> {
        let map = own_decode_map(above)?;
        let dec = crate::base::Decoder::new(map.iter().flatten().copied());
        self.own = Some(OwnDecode {
            dec,
            map,
            pkt: None,
            pktlen: None,
            protocol: None,
        });
        let mut keys: Vec<KeyDef> = INPUT_KEYS
            .iter()
            .zip(&map)
            .filter(|(_, m)| m.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        keys.extend(
            OWN_INPUTS
                .iter()
                .filter(|k| k.name != "oob.family")
                .cloned(),
        );
        Some(Cow::Owned(keys))
    }

    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        for (i, k) in INPUT_KEYS.iter().enumerate() {
            self.inputs[i] = b.input(&k.name);
        }
        if let Some(own) = self.own.as_mut() {
            own.pkt = b.input("raw.pkt");
            own.pktlen = b.input("raw.pktlen");
            own.protocol = b.input("oob.protocol");
        }
        for i in 0..NKEYS {
            self.out[i] = b.output_if_active(i);
        }
        Ok(())
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        if let Some(p) = self.packet_of(rec) {
            self.table.packet(&p);
            // The wall clock is read at the next tick, not here: a
            // clock_gettime per packet cost 5 % of the packet path. The
            // runtime ticks filters right after each read batch.
            self.clock_moved = true;
        }
        Verdict::Drop
    }

    fn emits(&self) -> bool {
        true
    }

    fn passes(&self) -> bool {
        // Every packet ends here (Drop above); only flow records go on.
        false
    }

    fn take(&mut self, rec: &mut Record) -> bool {
        if let Some(r) = self.second_half.take() {
            self.fill(&r, Some(true), rec);
            return true;
        }
        match self.table.pop() {
            Some(r) if self.unidirectional => {
                let ((first, reversed), second) = halves(&r);
                self.second_half = second;
                self.fill(&first, Some(reversed), rec);
                true
            }
            Some(r) => {
                self.fill(&r, None, rec);
                true
            }
            None => {
                if self.publish_when_drained {
                    self.publish_when_drained = false;
                    self.publish();
                }
                false
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        if std::mem::take(&mut self.clock_moved) {
            self.last_wall = Some((self.table.now(), now));
        } else if let Some((t, wall)) = self.last_wall {
            let gone = now.saturating_duration_since(wall).as_micros() as Usec;
            self.table.advance(t + gone);
        }
        let e = self.table.in_emergency();
        if e != self.was_emergency {
            self.was_emergency = e;
            if e {
                log::warn!(
                    "{} (FLOW): {} flows tracked: emergency mode, the emergency_* idle timeouts apply until enough flows have ended",
                    self.name,
                    self.table.len()
                );
            } else {
                log::info!(
                    "{} (FLOW): {} flows tracked: emergency mode over, normal timeouts again",
                    self.name,
                    self.table.len()
                );
            }
        }
        self.publish();
    }

    fn finish(&mut self) {
        self.table.finish();
        self.publish_when_drained = true;
    }

    fn signal(&mut self, sig: Signal) {
        if sig == Signal::Usr1 {
            self.publish();
        }
    }
}

#[cfg(test)]
mod tests;
