//! FLOW's options, and the timeouts they make.

use super::table::{Emergency, Timeouts, Usec};
use rulogd_plugin::homenet::check_home_net;
use rulogd_plugin::{BuildError, OptionDef, Options};

const DAY: i64 = 86400;

/// FLOW's options.
pub(super) static OPTIONS: [OptionDef; 17] = [
    OptionDef::int(
        "tcp_timeout",
        "300",
        "seconds an open TCP flow may stay idle",
    )
    .range(1, 7 * DAY),
    OptionDef::int("udp_timeout", "60", "seconds a UDP flow may stay idle").range(1, 7 * DAY),
    OptionDef::int(
        "icmp_timeout",
        "30",
        "seconds an ICMP or ICMPv6 flow may stay idle",
    )
    .range(1, 7 * DAY),
    OptionDef::int(
        "generic_timeout",
        "60",
        "seconds a flow of any other protocol may stay idle",
    )
    .range(1, 7 * DAY),
    OptionDef::int(
        "tcp_linger",
        "10",
        "seconds a TCP flow lives on after RST, or FIN from both sides",
    )
    .range(0, DAY),
    OptionDef::int(
        "active_timeout",
        "300",
        "seconds between update records of a long flow (0: none)",
    )
    .range(0, 7 * DAY),
    OptionDef::int(
        "max_life",
        "0",
        "seconds after its first packet a flow ends (reason active) and the next packet starts a new one (0: never)",
    )
    .range(0, 365 * DAY),
    OptionDef::int(
        "max_flows",
        "65536",
        "flows tracked at most; beyond, the least recently active ends (evicted)",
    )
    .range(1, 1 << 26),
    OptionDef::int(
        "start_records",
        "0",
        "1: a start record at each flow's first packet",
    )
    .flag(),
    OptionDef::str(
        "home_net",
        "",
        "home network prefixes (IPv4 and IPv6, comma or space separated): each record gets flow.direction",
    )
    .check(check_home_net),
    OptionDef::int(
        "emergency_threshold",
        "95",
        "percent of max_flows tracked at which emergency mode (the emergency_* timeouts) begins (0: never)",
    )
    .range(1, 100)
    .or_zero(),
    OptionDef::int(
        "emergency_recovery",
        "30",
        "percent of max_flows that must be free again before emergency mode ends",
    )
    .range(1, 99),
    OptionDef::int(
        "emergency_tcp_timeout",
        "100",
        "seconds an open TCP flow may stay idle in emergency mode",
    )
    .range(1, 7 * DAY),
    OptionDef::int(
        "emergency_udp_timeout",
        "100",
        "seconds a UDP flow may stay idle in emergency mode",
    )
    .range(1, 7 * DAY),
    OptionDef::int(
        "emergency_icmp_timeout",
        "100",
        "seconds an ICMP flow may stay idle in emergency mode",
    )
    .range(1, 7 * DAY),
    OptionDef::int(
        "emergency_generic_timeout",
        "100",
        "seconds a flow of another protocol may stay idle in emergency mode",
    )
    .range(1, 7 * DAY),
    OptionDef::int(
        "unidirectional",
        "0",
        "1: one record per direction (NetFlow, Suricata netflow), orig.* keys only",
    )
    .flag(),
];

fn secs(o: &Options, name: &str) -> Usec {
    o.int(name) as Usec * 1_000_000
}

/// The normal timeouts.
pub(super) fn timeouts(o: &Options) -> Timeouts {
    Timeouts {
        tcp: secs(o, "tcp_timeout"),
        udp: secs(o, "udp_timeout"),
        icmp: secs(o, "icmp_timeout"),
        other: secs(o, "generic_timeout"),
        linger: secs(o, "tcp_linger"),
        active: secs(o, "active_timeout"),
        max_life: secs(o, "max_life"),
    }
}

/// Emergency mode's settings, `None` when it is off. An emergency timeout
/// longer than the normal one is the normal one: emergency only shortens.
pub(super) fn emergency(
    o: &Options,
    to: &Timeouts,
    max_flows: usize,
) -> Result<Option<Emergency>, BuildError> {
    let pct = o.int("emergency_threshold") as usize;
    if pct == 0 {
        return Ok(None);
    }
    let free = o.int("emergency_recovery") as usize;
    if 100 - free >= pct {
        return Err(BuildError::option(
            "emergency_recovery",
            format!(
                "emergency mode would end at {}% of max_flows, not below where it begins ({pct}%): lower emergency_recovery or raise emergency_threshold",
                100 - free
            ),
        ));
    }
    let enter_at = (max_flows * pct).div_ceil(100).max(1);
    let leave_at = (max_flows * (100 - free) / 100).min(enter_at - 1);
    let e = Timeouts {
        tcp: secs(o, "emergency_tcp_timeout").min(to.tcp),
        udp: secs(o, "emergency_udp_timeout").min(to.udp),
        icmp: secs(o, "emergency_icmp_timeout").min(to.icmp),
        other: secs(o, "emergency_generic_timeout").min(to.other),
        ..*to
    };
    Ok(Some(Emergency {
        to: e,
        enter_at,
        leave_at,
    }))
}
