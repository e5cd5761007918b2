#!/usr/bin/env bash
# The main job on the embedded default, end to end: builds rulogd, starts it
# with no config file (so it uses conf/rulogd.conf, built in: NFLOG group 0 ->
# BASE -> IFINDEX -> IP2STR -> JSON in /var/log/rulogd/rulogd.json and SQLite in
# /var/log/rulogd/rulogd.sqlite3) inside a
# throw-away network namespace whose nftables rules log pings and UDP, sends
# some traffic, stops rulogd and shows what it wrote. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (network namespace, nftables)" >&2; exit 1; }
for p in nftables iproute2 iputils-ping sqlite3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables iproute2 iputils-ping sqlite3 >/dev/null
        break
    }
done
cargo build --release --bins
bin=$PWD/target/release/rulogd
out=/var/log/rulogd/rulogd.json
ns=rulogd-demo-$$
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
ip netns exec "$ns" nft -f - <<'NFT'
table inet demo {
    chain input {
        type filter hook input priority 0;
        icmp type echo-request log prefix "demo ping " group 0
        icmpv6 type echo-request log prefix "demo ping6 " group 0
        udp dport 5353 log prefix "demo udp " group 0
    }
}
NFT
before=$( [ -f "$out" ] && wc -l <"$out" || echo 0 )
ip netns exec "$ns" "$bin" -v &
pid=$!
sleep 1
ip netns exec "$ns" ping -c 3 -i 0.2 127.0.0.1 >/dev/null
ip netns exec "$ns" ping -6 -c 2 -i 0.2 ::1 >/dev/null
ip netns exec "$ns" bash -c 'for i in 1 2 3; do echo hello >/dev/udp/127.0.0.1/5353; done' || true
sleep 0.5
kill -TERM "$pid"; wait "$pid" || true; pid=
after=$(wc -l <"$out")
echo "== rulogd wrote $((after - before)) records to $out; the last three:"
tail -n 3 "$out"
echo "== and in SQLite (/var/log/rulogd/rulogd.sqlite3, table ulog_pkt): $(sqlite3 /var/log/rulogd/rulogd.sqlite3 'select count(*) from ulog_pkt') rows; the last three:"
sqlite3 -header /var/log/rulogd/rulogd.sqlite3 'select * from ulog_pkt order by rowid desc limit 3'
