//! `create=`: the table made on request from the schemas shipped in
//! conf/sql/ (the same text an operator loads with clickhouse-client), so
//! a sensor can start against an empty server.

use super::driver::ident;

/// The shipped packet table (`packets`).
const PACKETS: &str = include_str!("../../../../conf/sql/clickhouse-packets.sql");
/// The shipped flow table (`flows`) and its roll-up.
const FLOWS: &str = include_str!("../../../../conf/sql/clickhouse-flows.sql");

/// Columns the flows table gets for conntrack records (NFCT).
const NFCT_COLUMNS: &str = "ct_id UInt32";
/// Columns the flows table gets for FLOW records: those the schema's
/// comment tells an operator to add.
const FLOW_COLUMNS: &str = "flow_id UInt64, flow_seq UInt32, flow_type String, \
flow_end_reason Nullable(String), flow_direction Nullable(String), flow_guessed UInt8, \
oob_vlan Nullable(UInt16), orig_tcp_flags Nullable(UInt8), reply_tcp_flags Nullable(UInt8), \
icmpv6_type Nullable(UInt8)";

/// Which shipped schema a missing table is made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// clickhouse-packets.sql: NFLOG, BASE, IFINDEX keys.
    Packets,
    /// clickhouse-flows.sql with `ct_id`: NFCT records.
    Nfct,
    /// clickhouse-flows.sql with FLOW's own keys.
    Flow,
}

impl Schema {
    /// The `create` option's value; None for "".
    pub fn parse(s: &str) -> Option<Schema> {
        match s {
            "packets" => Some(Schema::Packets),
            "nfct" => Some(Schema::Nfct),
            "flow" => Some(Schema::Flow),
            _ => None,
        }
    }

    /// `CREATE TABLE IF NOT EXISTS database.table (…) ENGINE …` for this schema.
    pub fn create_sql(self, database: &str, table: &str) -> String {
        let (file, extra) = match self {
            Schema::Packets => (PACKETS, None),
            Schema::Nfct => (FLOWS, Some(NFCT_COLUMNS)),
            Schema::Flow => (FLOWS, Some(FLOW_COLUMNS)),
        };
        let body = first_create(file);
        // `CREATE TABLE IF NOT EXISTS name (` → the configured name.
        let open = body.find('(').unwrap_or(body.len());
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {}.{} {}",
            ident(database),
            ident(table),
            &body[open..]
        );
        if let (Some(extra), Some(end)) = (extra, sql.find("\n) ENGINE")) {
            sql.insert_str(end, &format!(",\n  {extra}"));
        }
        sql
    }
}

/// The first CREATE statement of a schema file, comments left out.
fn first_create(file: &str) -> String {
    let text: String = file
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let start = text.find("CREATE TABLE").unwrap_or(0);
    let end = text[start..].find(';').map_or(text.len(), |e| start + e);
    text[start..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::Schema;

    #[test]
    fn the_shipped_schemas_are_made_under_the_configured_name() {
        let p = Schema::Packets.create_sql("db", "pk");
        assert!(
            p.starts_with("CREATE TABLE IF NOT EXISTS `db`.`pk` ("),
            "{p}"
        );
        assert!(p.contains("ip_saddr       FixedString(16)"), "{p}");
        assert!(p.contains("ENGINE = MergeTree"), "{p}");
        assert!(!p.contains(';') && !p.contains("--"), "{p}");
        let f = Schema::Flow.create_sql("db", "fl");
        assert!(f.contains("Nullable(UInt8),\n  flow_id UInt64"), "{f}");
        assert!(!f.contains("flows_1m"), "{f}");
        let n = Schema::Nfct.create_sql("db", "ct");
        assert!(
            n.contains("Nullable(UInt8),\n  ct_id UInt32\n) ENGINE"),
            "{n}"
        );
        assert_eq!(Schema::parse(""), None);
    }
}
