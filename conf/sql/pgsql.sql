-- PostgreSQL table for rulogd's PGSQL output (and ulogd2's).
--
-- One flat table whose columns carry the names of ulogd2's `ulog` view, so
-- a config written for that view works with procedure="INSERT":
--   [pgsql1]
--   table="ulog"
--   procedure="INSERT"
-- Each column takes the key of its name ('_' read as '.'); the first
-- column, whose name starts with '_', is the row id and is left to the
-- database. Every other column must be fed by a plugin of the stack:
-- this one needs NFLOG, BASE, IFINDEX, IP2STR and HWHDR.
-- Load with: psql -d ulog -f pgsql.sql
-- For ulogd2's normalised schema with INSERT_PACKET_FULL, use ulogd2's own
-- pgsql-ulogd2.sql (Debian: /usr/share/doc/ulogd2-pgsql/): rulogd reads it too.

CREATE TABLE IF NOT EXISTS ulog (
    _id             bigserial PRIMARY KEY,
    -- when and where the packet was logged
    oob_time_sec    bigint,
    oob_time_usec   bigint,
    oob_hook        smallint,
    oob_prefix      varchar(64),
    oob_mark        bigint,
    oob_in          varchar(32),
    oob_out         varchar(32),
    oob_family      smallint,
    -- network layer (addresses as text from IP2STR)
    ip_saddr_str    inet,
    ip_daddr_str    inet,
    ip_protocol     smallint,
    ip_tos          smallint,
    ip_ttl          smallint,
    ip_totlen       integer,
    ip_ihl          smallint,
    ip_csum         integer,
    ip_id           integer,
    ip_fragoff      integer,
    ip6_payloadlen  integer,
    ip6_priority    smallint,
    ip6_hoplimit    smallint,
    ip6_flowlabel   bigint,
    ip6_fragoff     integer,
    ip6_fragid      bigint,
    -- transport layer
    tcp_sport       integer,
    tcp_dport       integer,
    tcp_seq         bigint,
    tcp_ackseq      bigint,
    tcp_window      integer,
    tcp_urg         boolean,
    tcp_urgp        integer,
    tcp_ack         boolean,
    tcp_psh         boolean,
    tcp_rst         boolean,
    tcp_syn         boolean,
    tcp_fin         boolean,
    udp_sport       integer,
    udp_dport       integer,
    udp_len         integer,
    icmp_type       smallint,
    icmp_code       smallint,
    icmp_echoid     integer,
    icmp_echoseq    integer,
    icmp_gateway    bigint,
    icmp_fragmtu    integer,
    icmpv6_type     smallint,
    icmpv6_code     smallint,
    icmpv6_echoid   integer,
    icmpv6_echoseq  integer,
    icmpv6_csum     integer,
    -- link layer (HWHDR)
    raw_type        integer,
    mac_str         varchar(256),
    mac_saddr_str   macaddr,
    mac_daddr_str   macaddr,
    oob_protocol    integer,
    raw_label       smallint,
    sctp_sport      integer,
    sctp_dport      integer,
    sctp_csum       bigint
);

CREATE INDEX IF NOT EXISTS ulog_time ON ulog (oob_time_sec);
CREATE INDEX IF NOT EXISTS ulog_saddr ON ulog (ip_saddr_str);
CREATE INDEX IF NOT EXISTS ulog_daddr ON ulog (ip_daddr_str);

-- Flows from FLOW -> IP2STR (conf/examples/sensor.conf), procedure="INSERT":
--   [pgsql2]
--   table="ulog_flow"            (or "ulog_flow_%Y_%m_%d" with
--   procedure="INSERT"            template="ulog_flow": a table a day,
--                                 by each row's flow_end_sec, local time)
-- One row per flow record (start, update, end); counters are deltas since
-- the flow's previous record, so SUM(...) GROUP BY flow_id gives totals.
CREATE TABLE IF NOT EXISTS ulog_flow (
    _id                 bigserial PRIMARY KEY,
    flow_id             bigint,       -- the same for every record of a flow
    flow_seq            bigint,       -- 1, 2, ... within the flow
    flow_type           varchar(8),   -- start, update, end
    flow_end_reason     varchar(8),   -- idle, active, fin, rst, evicted, forced
    flow_guessed        boolean,      -- the initiator was guessed (no SYN seen)
    flow_direction      varchar(8),   -- inbound, outbound, internal, external
    flow_start_sec      bigint,       -- first packet, seconds since 1970
    flow_start_usec     integer,
    flow_end_sec        bigint,       -- last packet so far
    flow_end_usec       integer,
    oob_family          smallint,     -- 2 IPv4, 10 IPv6
    oob_vlan            integer,      -- outermost VLAN id, NULL untagged
    orig_ip_protocol    smallint,
    orig_ip_saddr_str   inet,         -- the initiator
    orig_ip_daddr_str   inet,         -- the responder
    orig_l4_sport       integer,      -- TCP and UDP only
    orig_l4_dport       integer,
    orig_raw_pktcount   bigint,       -- initiator -> responder
    orig_raw_pktlen     bigint,       -- bytes (IP length)
    reply_raw_pktcount  bigint,       -- responder -> initiator
    reply_raw_pktlen    bigint,
    orig_tcp_flags      smallint,     -- OR of the TCP flags, per direction
    reply_tcp_flags     smallint,
    icmp_type           smallint,
    icmp_code           smallint,
    icmpv6_type         smallint,
    icmpv6_code         smallint
);

CREATE INDEX IF NOT EXISTS ulog_flow_end ON ulog_flow (flow_end_sec);
CREATE INDEX IF NOT EXISTS ulog_flow_id ON ulog_flow (flow_id);
