#!/usr/bin/env bash
# The whole test suite: style gates, unit tests, config tests, kernel tests in
# network namespaces (NFLOG, nftables), differential tests against ulogd2, and
# a short fuzz run of every parser. Needs root (network namespaces); installs
# the Debian packages it needs when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "test-all.sh: run as root (the kernel tests create network namespaces)" >&2
    exit 1
fi

# Debian packages the tests use: nft and ip for the namespace lab (iptables
# for NFQUEUE rules on kernels without nft_queue), ulogd2 as
# the oracle of the differential tests (with its JSON, SQL and PCAP
# plugins), tcpdump to read PCAP files, faketime for the single-digit-day run,
# PostgreSQL and MariaDB servers for the SQL tests, prometheus for promtool
# (the metrics endpoint's format check), tshark (dumpcap, the oracle of
# the capture-file tests), argus-server and argus-client (the oracle of
# the FLOW tests), gcc (builds the C plugin examples of tests/plugins.rs),
# chromium and chromium-driver (the WEB page test), softflowd (the other
# oracle of the FLOW tests), clickhouse-server (the CLICKHOUSE tests start their own
# throw-away server from its binary; the packaged service is stopped below),
# curl, pip and unzip (the chdb-core wheel, a current ClickHouse engine the
# CLICKHOUSE tests run behind tests/lab/chdb_http.py, unpacked, not installed).
need=()
for p in nftables iproute2 iptables systemd ulogd2 ulogd2-json tcpdump iputils-ping conntrack nfacct graphite-carbon python3-whisper sqlite3 ulogd2-sqlite3 ulogd2-pgsql ulogd2-pcap postgresql mariadb-server ulogd2-mysql faketime prometheus tshark nfdump argus-server argus-client gcc chromium chromium-driver softflowd clickhouse-server curl python3-pip unzip; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
chdb=/var/cache/rulogd-tests/chdb
if [ ! -d "$chdb/chdb" ]; then
    echo "== fetching the chdb-core wheel into $chdb"
    tmp=$(mktemp -d)
    pip download -q --no-deps chdb-core==26.9.0 -d "$tmp"
    mkdir -p "$chdb" && unzip -q -o "$tmp"/chdb_core-*.whl -d "$chdb"
    rm -rf "$tmp"
fi
# ulogd2's package may start a system ulogd; it must not hold NFLOG groups in
# the root namespace while tests run (tests use their own namespaces anyway).
systemctl stop ulogd2 >/dev/null 2>&1 || true
# The SQL tests start their own throw-away servers; the packages' system
# servers are not used.
for s in mariadb postgresql prometheus clickhouse-server; do
    systemctl stop "$s" >/dev/null 2>&1 || service "$s" stop >/dev/null 2>&1 || true
done

echo "== style"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== a build without the SQL outputs pulls none of their clients"
if cargo tree -p rulogd --no-default-features -e normal | grep -E "(postgres|rusqlite|mysql) v"; then
    echo "test-all.sh: --no-default-features still depends on an SQL client" >&2
    exit 1
fi
cargo check -q -p rulogd --no-default-features

echo "== build"
cargo build --release --bins

echo "== the Debian package: build, install beside ulogd2, check, purge"
packaging/test-package.sh

echo "== tests"
# rulogd's default spools go under its state directory: the lab gives each
# daemon its own; anything else a test starts uses this throw-away one.
STATE_DIRECTORY="$(mktemp -d /tmp/rulogd-state.XXXXXX)"
export STATE_DIRECTORY
trap 'rm -rf "$STATE_DIRECTORY"' EXIT
export RULOGD_KERNEL_TESTS=1
export RULOGD_BIN="$PWD/target/release/rulogd"
cargo test --workspace --no-fail-fast -- --test-threads=2

echo "== date-sensitive tests with the daemons' clock on a single-digit day"
# LOGEMU and SYSLOG write "Mmm dd": on days 1-9 the day is padded with a
# space. Whatever today is, run those tests once on such a day.
RULOGD_FAKETIME="@2026-12-03 09:05:00" cargo test -p rulogd-tests --no-fail-fast \
    --test differential_nfct --test differential_text -- --test-threads=2

echo "== fuzz (short run of every target; corpora are also replayed by the unit tests)"
if [ "${RULOGD_SKIP_FUZZ:-0}" != 1 ]; then
    command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
    ( cd tests/fuzz
      for t in $(cargo fuzz list); do
          cargo fuzz run "$t" --sanitizer none -- -max_total_time="${FUZZ_SECONDS:-30}" -rss_limit_mb=2048
      done )
fi
echo "== all tests passed"
