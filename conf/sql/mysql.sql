-- MySQL / MariaDB table for rulogd's MYSQL output (and ulogd2's).
--
-- One flat table with the column names of ulogd2's `ulog` view, so that a
-- config written for that view works with procedure="INSERT":
--   [mysql1]
--   table="ulog"
--   procedure="INSERT"
-- Each column takes the key of its name ('_' read as '.'); the first column
-- is always the row id and is left to the database. Every other column must
-- be fed by a plugin of the stack: this one needs NFLOG, BASE, IFINDEX,
-- IP2STR and HWHDR. Addresses are kept as text (IP2STR), which reads well
-- and sorts per family; use binary(16) columns named ip_saddr_bin with IP2BIN
-- to store them as bytes instead.
-- Unsigned types are wide enough for every value of their key (ulogd2's own
-- schemas put oob.protocol in a signed smallint, which refuses IPv6 packets
-- in strict mode).
-- Load with: mariadb ulog < mysql.sql
-- For ulogd2's normalised schema with INSERT_PACKET_FULL, use ulogd2's own
-- mysql-ulogd2.sql (Debian: /usr/share/doc/ulogd2-mysql/): rulogd reads it too.

CREATE TABLE IF NOT EXISTS ulog (
    _id             bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
    -- when and where the packet was logged
    oob_time_sec    bigint unsigned,
    oob_time_usec   int unsigned,
    oob_hook        tinyint unsigned,
    oob_prefix      varchar(64),
    oob_mark        int unsigned,
    oob_in          varchar(32),
    oob_out         varchar(32),
    oob_family      tinyint unsigned,
    oob_protocol    smallint unsigned,
    raw_label       tinyint unsigned,
    -- network layer (addresses as text from IP2STR)
    ip_saddr_str    varchar(40),
    ip_daddr_str    varchar(40),
    ip_protocol     tinyint unsigned,
    ip_tos          tinyint unsigned,
    ip_ttl          tinyint unsigned,
    ip_totlen       smallint unsigned,
    ip_ihl          tinyint unsigned,
    ip_csum         smallint unsigned,
    ip_id           smallint unsigned,
    ip_fragoff      smallint unsigned,
    ip6_payloadlen  smallint unsigned,
    ip6_priority    tinyint unsigned,
    ip6_hoplimit    tinyint unsigned,
    ip6_flowlabel   int unsigned,
    ip6_fragoff     smallint unsigned,
    ip6_fragid      int unsigned,
    -- transport layer
    tcp_sport       smallint unsigned,
    tcp_dport       smallint unsigned,
    tcp_seq         int unsigned,
    tcp_ackseq      int unsigned,
    tcp_window      smallint unsigned,
    tcp_urg         tinyint,
    tcp_urgp        smallint unsigned,
    tcp_ack         tinyint,
    tcp_psh         tinyint,
    tcp_rst         tinyint,
    tcp_syn         tinyint,
    tcp_fin         tinyint,
    udp_sport       smallint unsigned,
    udp_dport       smallint unsigned,
    udp_len         smallint unsigned,
    sctp_sport      smallint unsigned,
    sctp_dport      smallint unsigned,
    sctp_csum       int unsigned,
    icmp_type       tinyint unsigned,
    icmp_code       tinyint unsigned,
    icmp_echoid     smallint unsigned,
    icmp_echoseq    smallint unsigned,
    icmp_gateway    int unsigned,
    icmp_fragmtu    smallint unsigned,
    icmpv6_type     tinyint unsigned,
    icmpv6_code     tinyint unsigned,
    icmpv6_echoid   smallint unsigned,
    icmpv6_echoseq  smallint unsigned,
    icmpv6_csum     smallint unsigned,
    -- link layer (HWHDR)
    raw_type        smallint unsigned,
    mac_str         varchar(256),
    mac_saddr_str   varchar(17),
    mac_daddr_str   varchar(17),
    KEY ulog_time (oob_time_sec),
    KEY ulog_saddr (ip_saddr_str),
    KEY ulog_daddr (ip_daddr_str)
) ENGINE=InnoDB CHARACTER SET utf8mb4;
