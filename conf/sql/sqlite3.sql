-- SQLite tables for rulogd's SQLITE3 output.
--
-- Each column names the key it is filled from, with '.' written as '_'
-- (oob_prefix <- oob.prefix). Every column must be fed by some plugin of the
-- stack, so pick the columns your stack provides. Create the tables with
--   sqlite3 /var/log/rulogd/rulogd.sqlite3 < sqlite3.sql
-- rulogd turns on WAL mode itself.

-- Packets from NFLOG -> BASE -> IFINDEX -> IP2STR (the default config).
CREATE TABLE IF NOT EXISTS ulog_pkt (
    oob_time_sec    INTEGER,  -- seconds since 1970
    oob_time_usec   INTEGER,
    oob_prefix      TEXT,     -- the rule's log prefix
    oob_hook        INTEGER,  -- 0 prerouting .. 4 postrouting
    oob_mark        INTEGER,
    oob_in          TEXT,     -- input interface name
    oob_out         TEXT,     -- output interface name
    oob_family      INTEGER,  -- 2 IPv4, 10 IPv6, 7 bridge
    oob_protocol    INTEGER,  -- ethertype
    raw_pktlen      INTEGER,
    ip_saddr_str    TEXT,
    ip_daddr_str    TEXT,
    ip_protocol     INTEGER,
    ip_tos          INTEGER,
    ip_ttl          INTEGER,
    ip_totlen       INTEGER,
    ip_id           INTEGER,
    ip_fragoff      INTEGER,
    ip6_flowlabel   INTEGER,
    tcp_sport       INTEGER,
    tcp_dport       INTEGER,
    tcp_seq         INTEGER,
    tcp_window      INTEGER,
    tcp_syn         INTEGER,  -- flags: 0 or 1
    tcp_ack         INTEGER,
    tcp_fin         INTEGER,
    tcp_rst         INTEGER,
    udp_sport       INTEGER,
    udp_dport       INTEGER,
    udp_len         INTEGER,
    icmp_type       INTEGER,
    icmp_code       INTEGER,
    icmpv6_type     INTEGER,
    icmpv6_code     INTEGER
);

-- Flows from NFCT, with the same columns as ulogd2's ulog_ct table.
CREATE TABLE IF NOT EXISTS ulog_ct (
    flow_start_sec      INTEGER,
    flow_start_usec     INTEGER,
    flow_end_sec        INTEGER,
    flow_end_usec       INTEGER,
    orig_ip_saddr       INTEGER,  -- address as ulogd2 writes it (see the man page)
    orig_ip_daddr       INTEGER,
    orig_l4_sport       INTEGER,
    orig_l4_dport       INTEGER,
    orig_ip_protocol    INTEGER,
    icmp_type           INTEGER,
    icmp_code           INTEGER,
    orig_raw_pktlen     INTEGER,
    orig_raw_pktcount   INTEGER,
    reply_raw_pktlen    INTEGER,
    reply_raw_pktcount  INTEGER,
    ct_mark             INTEGER
);
