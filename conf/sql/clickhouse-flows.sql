-- rulogd CLICKHOUSE: a flows table for NFCT or FLOW records (the keys both
-- emit), and a per-minute roll-up by direction and host.
-- Column names are key names with dots as underscores. For NFCT add
--   ALTER TABLE flows ADD COLUMN ct_id UInt32;
-- for FLOW add (flow_end_reason takes flow.end_reason: a column takes a
-- key with `_` where its reading has `.`; start and update records have
-- no end reason, nor flows outside home_net a direction)
--   ALTER TABLE flows ADD COLUMN flow_id UInt64,
--     ADD COLUMN flow_seq UInt32, ADD COLUMN flow_type String,
--     ADD COLUMN flow_end_reason Nullable(String),
--     ADD COLUMN flow_direction Nullable(String), ADD COLUMN flow_guessed UInt8,
--     ADD COLUMN oob_vlan Nullable(UInt16), ADD COLUMN orig_tcp_flags Nullable(UInt8),
--     ADD COLUMN reply_tcp_flags Nullable(UInt8), ADD COLUMN icmpv6_type Nullable(UInt8);
-- (tests/clickhouse_flow.rs runs exactly this.)
-- Works on ClickHouse 18.16 and on current servers: FixedString(16)
-- addresses (IPv4 as ::ffff:a.b.c.d), DateTime plus microseconds. One
-- partition per day; 18.16 has no TTL clause (drop partitions); on 19.6
-- and later add  ALTER TABLE flows MODIFY TTL flow_end_sec + INTERVAL 90 DAY;
CREATE TABLE IF NOT EXISTS flows (
  flow_start_sec     DateTime,
  flow_start_usec    UInt32,
  flow_end_sec       DateTime,
  flow_end_usec      UInt32,
  oob_family         UInt8,
  ct_event           UInt32,
  orig_ip_saddr      FixedString(16),
  orig_ip_daddr      FixedString(16),
  orig_ip_protocol   UInt8,
  orig_l4_sport      Nullable(UInt16),
  orig_l4_dport      Nullable(UInt16),
  orig_raw_pktlen    UInt64,
  orig_raw_pktcount  UInt64,
  reply_ip_saddr     FixedString(16),
  reply_ip_daddr     FixedString(16),
  reply_l4_sport     Nullable(UInt16),
  reply_l4_dport     Nullable(UInt16),
  reply_raw_pktlen   UInt64,
  reply_raw_pktcount UInt64,
  icmp_type          Nullable(UInt8),
  icmp_code          Nullable(UInt8)
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(flow_end_sec)
ORDER BY (flow_end_sec, orig_ip_saddr, orig_ip_daddr);

-- Bytes and packets per minute and source host, both directions, summed
-- as parts merge (query with sum() and GROUP BY: merging is eventual).
CREATE TABLE IF NOT EXISTS flows_1m (
  minute      DateTime,
  host        FixedString(16),
  protocol    UInt8,
  fwd_bytes   UInt64,
  fwd_packets UInt64,
  rev_bytes   UInt64,
  rev_packets UInt64
) ENGINE = SummingMergeTree((fwd_bytes, fwd_packets, rev_bytes, rev_packets))
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, host, protocol);

CREATE MATERIALIZED VIEW IF NOT EXISTS flows_1m_mv TO flows_1m AS
SELECT toStartOfMinute(flow_end_sec) AS minute,
       orig_ip_saddr AS host,
       orig_ip_protocol AS protocol,
       orig_raw_pktlen AS fwd_bytes,
       orig_raw_pktcount AS fwd_packets,
       reply_raw_pktlen AS rev_bytes,
       reply_raw_pktcount AS rev_packets
FROM flows;

-- A cluster (example, not run by the tests): create `flows` as above on
-- every shard (ReplicatedMergeTree where shards have replicas: then a
-- retried insert is deduplicated by block checksum on 18.16 too, by the
-- description of its insert_deduplicate setting; not tested here), then a Distributed table
-- that sensors write to and queries read from; the cluster `sensors` is
-- declared in the servers' remote_servers config:
--   CREATE TABLE flows_all AS flows
--     ENGINE = Distributed(sensors, default, flows, rand());
-- and point CLICKHOUSE at it with table="flows_all" (its columns are the
-- same, so the keys are the same).
