//! IPFIX: conntrack flows exported as RFC 7011 IPFIX, with ulogd's
//! `ulogd_output_IPFIX` options (oid, host, port, proto, mtu,
//! send_template), so its NFCT → IPFIX stacks run unchanged.
//!
//! Beyond ulogd (IPv4 only, both directions summed into 32-bit counters):
//! IPv4 and IPv6 templates chosen by each record's family, 64-bit counters,
//! flowStart/EndMilliseconds, ICMP type and code, and each direction kept:
//! one RFC 5103 biflow record per flow (the reply counts as reverse
//! elements) or, with `biflow=0`, one record per direction. Messages are
//! built here on the input thread ([`encode`]) and numbered by the writer
//! thread ([`transport`]); over TCP the shared delivery reconnects and
//! spools, and every connection starts with the templates.

mod encode;
mod transport;

use encode::{template_for, templates, Flow, MessageBuilder};
use rulogd_delivery::{
    spool_config, Delivery, DeliveryConfig, Producer, StreamTransport, Transport, UdpTransport,
    WhenFull, SPOOL_RETRY_MAX,
};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, KeyDef, KeyType, OptionDef, Output, OutputError, Record, Slot,
    Value,
};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use transport::{IpfixTransport, TemplateMode};

static OPTIONS: [OptionDef; 12] = [
    OptionDef::int("oid", "0", "Observation Domain ID (must not be 0, as in ulogd)")
        .range(0, u32::MAX as i64),
    OptionDef::str("host", "", "Collector host (address or name)")
        .check(rulogd_plugin::options::check_not_empty)
        .mandatory(),
    OptionDef::int("port", "4739", "Collector port").range(1, 65535),
    OptionDef::str("proto", "tcp", "Transport: tcp or udp").one_of(&["tcp", "udp"]),
    OptionDef::int(
        "mtu",
        "512",
        "Largest IPFIX message, bytes (below 148, 148 is used)",
    )
    .range(1, 65535),
    OptionDef::str(
        "send_template",
        "once",
        "once: at the start of each connection (UDP: and every template_refresh s); never; else before every message",
    ),
    OptionDef::int(
        "biflow",
        "1",
        "rulogd only: 1: one RFC 5103 biflow record per flow; 0: one record per direction",
    )
    .flag(),
    OptionDef::int(
        "template_refresh",
        "60",
        "rulogd only: UDP: seconds between template re-sends; 0: only at start",
    )
    .range(0, 86_400),
    OptionDef::int("queue_size", "64", "rulogd only: batches queued for the writer thread")
        .range(1, 1 << 20),
    OptionDef::str("when_full", "drop", "rulogd only: full queue: drop (counted) or block")
        .one_of(&["block", "drop"]),
    rulogd_delivery::SPOOL_DIR,
    rulogd_delivery::SPOOL_SIZE,
];

/// The smallest message that holds both templates of a mode (16-byte
/// header, set header, two 64-byte templates) and so any one data record.
const MIN_MTU: usize = 148;

rulogd_plugin::key_table! {
    /// ulogd's input keys (all mandatory), then the ones rulogd reads when present.
    static INPUT: [KeyDef; N_INPUT];
    ORIG_SADDR = KeyDef::new("orig.ip.saddr", KeyType::IpAddr);
    ORIG_DADDR = KeyDef::new("orig.ip.daddr", KeyType::IpAddr);
    ORIG_PKTS = KeyDef::new("orig.raw.pktcount", KeyType::U64);
    ORIG_BYTES = KeyDef::new("orig.raw.pktlen", KeyType::U64);
    REPLY_PKTS = KeyDef::new("reply.raw.pktcount", KeyType::U64);
    REPLY_BYTES = KeyDef::new("reply.raw.pktlen", KeyType::U64);
    START_SEC = KeyDef::new("flow.start.sec", KeyType::U32);
    START_USEC = KeyDef::new("flow.start.usec", KeyType::U32);
    END_SEC = KeyDef::new("flow.end.sec", KeyType::U32);
    END_USEC = KeyDef::new("flow.end.usec", KeyType::U32);
    SPORT = KeyDef::new("orig.l4.sport", KeyType::U16);
    DPORT = KeyDef::new("orig.l4.dport", KeyType::U16);
    PROTO = KeyDef::new("orig.ip.protocol", KeyType::U8);
    // Required by ulogd2, never exported: optional, so FLOW records bind too.
    CT_MARK = KeyDef::new("ct.mark", KeyType::U32).optional();
    REPLY_SADDR = KeyDef::new("reply.ip.saddr", KeyType::IpAddr).optional();
    REPLY_DADDR = KeyDef::new("reply.ip.daddr", KeyType::IpAddr).optional();
    REPLY_SPORT = KeyDef::new("reply.l4.sport", KeyType::U16).optional();
    REPLY_DPORT = KeyDef::new("reply.l4.dport", KeyType::U16).optional();
    ICMP_TYPE = KeyDef::new("icmp.type", KeyType::U8).optional();
    ICMP_CODE = KeyDef::new("icmp.code", KeyType::U8).optional();
    ICMP6_TYPE = KeyDef::new("icmpv6.type", KeyType::U8).optional();
    ICMP6_CODE = KeyDef::new("icmpv6.code", KeyType::U8).optional();
    CT_ID = KeyDef::new("ct.id", KeyType::U32).optional();
}

rulogd_plugin::plugin! {
    Output "IPFIX" (build): "Exports conntrack flows as IPFIX (RFC 7011; RFC 5103 biflows) over TCP or UDP";
    options &OPTIONS;
    input &INPUT;
}

/// One IPFIX instance in one stack.
pub struct Ipfix {
    producer: Producer,
    msgs: MessageBuilder,
    biflow: bool,
    slots: [Option<Slot>; INPUT.len()],
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    let o = ctx.options;
    let oid = o.int("oid");
    if oid == 0 {
        return Err(BuildError::option(
            "oid",
            "invalid Observation ID 0: set oid to a non-zero domain id",
        ));
    }
    let oid = u32::try_from(oid)
        .map_err(|_| BuildError::option("oid", format!("{oid} is out of range 1..=4294967295")))?;
    let host = o.str("host").to_string();
    if host.is_empty() {
        return Err(BuildError::option("host", "no destination host specified"));
    }
    let port = o.int("port").to_string();
    let tcp = match o.str("proto") {
        "tcp" => true,
        "udp" => false,
        p => {
            return Err(BuildError::option(
                "proto",
                format!("unknown transport `{p}`; valid: tcp, udp"),
            ))
        }
    };
    let mtu = usize::try_from(o.int("mtu"))
        .ok()
        .filter(|m| (1..=65535).contains(m))
        .ok_or_else(|| BuildError::option("mtu", "out of range 1..=65535"))?;
    if mtu < MIN_MTU {
        log::warn!(
            "{}: mtu {mtu} cannot hold the templates; using {MIN_MTU}",
            ctx.instance
        );
    }
    // A UDP datagram holds at most 65507 bytes over IPv4.
    let mtu = mtu.max(MIN_MTU).min(if tcp { 65535 } else { 65507 });
    let mode = TemplateMode::parse(o.str("send_template"));
    let biflow = o.int("biflow") != 0;
    let refresh = match o.int("template_refresh") {
        0 => None,
        s => Some(Duration::from_secs(s as u64)),
    };
    let when_full = WhenFull::option(o)?;
    let mut cfg = DeliveryConfig::new(ctx.instance, "IPFIX", when_full);
    cfg.queue_size = o.int("queue_size").clamp(1, 1 << 20) as usize;
    // Messages are small: hand them over in small batches.
    cfg.batch_bytes = 16 * 1024;
    if tcp {
        cfg.spool = spool_config(ctx, SPOOL_RETRY_MAX)?;
    }
    let delivery = Delivery::shared(ctx, "IPFIX", &cfg, || {
        let inner: Box<dyn Transport> = if tcp {
            Box::new(StreamTransport::tcp(&host, &port))
        } else {
            Box::new(UdpTransport::new(&host, &port))
        };
        let refresh = if tcp { None } else { refresh };
        Ok(Box::new(IpfixTransport::new(
            inner,
            mode,
            refresh,
            oid,
            &templates(biflow),
        )) as Box<dyn Transport>)
    })?;
    Ok(Box::new(Ipfix {
        producer: delivery.producer(false),
        msgs: MessageBuilder::new(mtu, oid),
        biflow,
        slots: [None; INPUT.len()],
    }))
}

fn ip(rec: &Record, slot: Option<Slot>) -> Option<IpAddr> {
    match rec.get_opt(slot)? {
        Value::Ipv4(a) => Some(IpAddr::V4(*a)),
        Value::Ipv6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn ms(sec: Option<u64>, usec: Option<u64>) -> Option<u64> {
    let s = sec.filter(|&s| s != 0)?;
    Some(s * 1000 + usec.unwrap_or(0) / 1000)
}

impl Ipfix {
    fn get(&self, rec: &Record, k: usize) -> Option<u64> {
        rec.get_u64(self.slots[k])
    }

    /// The flow as the original direction sees it; `None` without addresses.
    fn flow(&self, rec: &Record) -> Option<Flow> {
        let src = ip(rec, self.slots[ORIG_SADDR])?;
        let dst = ip(rec, self.slots[ORIG_DADDR])?;
        let end = ms(self.get(rec, END_SEC), self.get(rec, END_USEC));
        let start = ms(self.get(rec, START_SEC), self.get(rec, START_USEC));
        // Without conntrack timestamps there are no times: take now.
        let end_ms = end.or(start).unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        });
        let proto = self.get(rec, PROTO).unwrap_or(0) as u8;
        let (t, c) = if src.is_ipv4() {
            (ICMP_TYPE, ICMP_CODE)
        } else {
            (ICMP6_TYPE, ICMP6_CODE)
        };
        let icmp = match (self.get(rec, t), self.get(rec, c)) {
            (None, None) => 0,
            (ty, co) => (ty.unwrap_or(0) << 8 | co.unwrap_or(0)) as u16,
        };
        Some(Flow {
            src,
            dst,
            sport: self.get(rec, SPORT).unwrap_or(0) as u16,
            dport: self.get(rec, DPORT).unwrap_or(0) as u16,
            proto,
            bytes: self.get(rec, ORIG_BYTES).unwrap_or(0),
            pkts: self.get(rec, ORIG_PKTS).unwrap_or(0),
            rev_bytes: self.get(rec, REPLY_BYTES).unwrap_or(0),
            rev_pkts: self.get(rec, REPLY_PKTS).unwrap_or(0),
            start_ms: start.unwrap_or(end_ms),
            end_ms,
            icmp,
            id: self.get(rec, CT_ID).unwrap_or(0),
        })
    }

    /// The reply direction as its own flow: the reply tuple when the record
    /// has it (it differs under NAT), else the original one reversed.
    fn reply(&self, rec: &Record, f: &Flow) -> Flow {
        let port = |k: usize, or: u16| self.get(rec, k).map_or(or, |p| p as u16);
        Flow {
            src: ip(rec, self.slots[REPLY_SADDR]).unwrap_or(f.dst),
            dst: ip(rec, self.slots[REPLY_DADDR]).unwrap_or(f.src),
            sport: port(REPLY_SPORT, f.dport),
            dport: port(REPLY_DPORT, f.sport),
            bytes: f.rev_bytes,
            pkts: f.rev_pkts,
            rev_bytes: 0,
            rev_pkts: 0,
            ..*f
        }
    }
}

impl Output for Ipfix {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        for (slot, k) in self.slots.iter_mut().zip(INPUT.iter()) {
            *slot = b.input(&k.name);
        }
        Ok(())
    }

    fn write(&mut self, rec: &Record) -> Result<(), OutputError> {
        let Some(f) = self.flow(rec) else {
            return Ok(());
        };
        let reply = (!self.biflow).then(|| self.reply(rec, &f));
        let producer = &mut self.producer;
        let mut result = Ok(());
        let mut done = |m: &[u8]| {
            producer.batch().buf().extend_from_slice(m);
            if let Err(e) = producer.commit() {
                result = Err(e);
            }
        };
        if let Some(r) = reply {
            let mut orig = f;
            (orig.rev_bytes, orig.rev_pkts) = (0, 0);
            let tid = template_for(&f, false);
            self.msgs.push(tid, &orig, &mut done);
            if r.pkts > 0 {
                self.msgs.push(template_for(&r, false), &r, &mut done);
            }
        } else {
            self.msgs.push(template_for(&f, true), &f, &mut done);
        }
        result
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        let producer = &mut self.producer;
        let mut result = Ok(());
        self.msgs.finish(&mut |m: &[u8]| {
            producer.batch().buf().extend_from_slice(m);
            if let Err(e) = producer.commit() {
                result = Err(e);
            }
        });
        result?;
        self.producer.flush()
    }
}

impl Drop for Ipfix {
    fn drop(&mut self) {
        // The message being filled goes out with the producer's last batch.
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests;
