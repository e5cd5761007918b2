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

-- Flows from FLOW -> IP2STR (conf/examples/sensor.conf): one row per flow
-- record (start, update, end), counters as deltas since the flow's
-- previous record, so SUM(...) GROUP BY flow_id gives a flow's totals.
-- For one table a day, set table="ulog_flow_%Y_%m_%d" and
-- template="ulog_flow": rows go by their flow_end_sec (local time).
CREATE TABLE IF NOT EXISTS ulog_flow (
    flow_id             INTEGER,  -- the same for every record of a flow
    flow_seq            INTEGER,  -- 1, 2, ... within the flow
    flow_type           TEXT,     -- start, update, end
    flow_end_reason     TEXT,     -- idle, active, fin, rst, evicted, forced
    flow_guessed        INTEGER,  -- 1: the initiator was guessed (no SYN seen)
    flow_direction      TEXT,     -- inbound, outbound, internal, external (home_net)
    flow_start_sec      INTEGER,  -- first packet, seconds since 1970
    flow_start_usec     INTEGER,
    flow_end_sec        INTEGER,  -- last packet so far
    flow_end_usec       INTEGER,
    oob_family          INTEGER,  -- 2 IPv4, 10 IPv6
    oob_vlan            INTEGER,  -- outermost VLAN id, NULL untagged
    orig_ip_protocol    INTEGER,
    orig_ip_saddr_str   TEXT,     -- the initiator
    orig_ip_daddr_str   TEXT,     -- the responder
    orig_l4_sport       INTEGER,  -- TCP and UDP only
    orig_l4_dport       INTEGER,
    orig_raw_pktcount   INTEGER,  -- initiator -> responder
    orig_raw_pktlen     INTEGER,  -- bytes (IP length)
    reply_raw_pktcount  INTEGER,  -- responder -> initiator
    reply_raw_pktlen    INTEGER,
    orig_tcp_flags      INTEGER,  -- OR of the TCP flags, per direction
    reply_tcp_flags     INTEGER,
    icmp_type           INTEGER,
    icmp_code           INTEGER,
    icmpv6_type         INTEGER,
    icmpv6_code         INTEGER
);
CREATE INDEX IF NOT EXISTS ulog_flow_end ON ulog_flow (flow_end_sec);
CREATE INDEX IF NOT EXISTS ulog_flow_id ON ulog_flow (flow_id);
