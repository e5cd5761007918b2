-- rulogd CLICKHOUSE: a packet table (NFLOG, BASE, IFINDEX keys).
-- Column names are key names with dots as underscores (ip_saddr: ip.saddr);
-- CLICKHOUSE reads them with DESCRIBE TABLE and writes only these.
-- Works on ClickHouse 18.16 (Debian 12) and on current servers:
--  * addresses are FixedString(16): IPv6, or IPv4 as ::ffff:a.b.c.d
--    (IPv6NumToString(ip_saddr) prints them; 18.16 has no IPv6 type);
--  * time is DateTime (seconds) plus oob_time_usec (18.16 has no DateTime64);
--  * keys a packet may lack are Nullable, so "absent" stays distinct from 0.
-- One partition per day. 18.16 has no TTL clause: drop old days with
-- ALTER TABLE packets DROP PARTITION 20260101; on 19.6 and later add
--   ALTER TABLE packets MODIFY TTL oob_time_sec + INTERVAL 30 DAY;
-- Load: clickhouse-client --multiquery < clickhouse-packets.sql
CREATE TABLE IF NOT EXISTS packets (
  oob_time_sec   DateTime,
  oob_time_usec  UInt32,
  oob_prefix     String,
  oob_hook       UInt8,
  oob_mark       UInt32,
  oob_in         String,
  oob_out        String,
  oob_family     UInt8,
  oob_protocol   UInt16,
  raw_pktlen     UInt32,
  ip_saddr       FixedString(16),
  ip_daddr       FixedString(16),
  ip_protocol    Nullable(UInt8),
  ip_tos         Nullable(UInt8),
  ip_ttl         Nullable(UInt8),
  ip_totlen      Nullable(UInt16),
  ip_id          Nullable(UInt16),
  ip6_payloadlen Nullable(UInt16),
  ip6_flowlabel  Nullable(UInt32),
  ip6_hoplimit   Nullable(UInt8),
  ip6_nexthdr    Nullable(UInt8),
  tcp_sport      Nullable(UInt16),
  tcp_dport      Nullable(UInt16),
  tcp_seq        Nullable(UInt32),
  tcp_syn        Nullable(UInt8),
  tcp_ack        Nullable(UInt8),
  tcp_fin        Nullable(UInt8),
  tcp_rst        Nullable(UInt8),
  udp_sport      Nullable(UInt16),
  udp_dport      Nullable(UInt16),
  udp_len        Nullable(UInt16),
  icmp_type      Nullable(UInt8),
  icmp_code      Nullable(UInt8),
  icmpv6_type    Nullable(UInt8),
  icmpv6_code    Nullable(UInt8)
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(oob_time_sec)
ORDER BY (oob_time_sec, oob_prefix);
