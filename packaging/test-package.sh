#!/usr/bin/env bash
# Builds the Debian package from the release binary, installs it with dpkg
# next to Debian's ulogd2, checks what it put where, checks both configs with
# the installed rulogd and the unit with systemd-analyze, then removes and
# purges it and checks that nothing is left. Needs root; run by test-all.sh
# after `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "test-package.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root (it installs the package)"
command -v cargo-deb >/dev/null 2>&1 || cargo install --locked cargo-deb
if dpkg-query -W -f='${Status}' rulogd 2>/dev/null | grep -q "install ok installed"; then
    fail "a rulogd package is installed already; remove it first"
fi

cargo deb -p rulogd --no-build --strip
deb=$(ls -t target/debian/rulogd_*.deb | head -1)
trap 'dpkg -P rulogd >/dev/null 2>&1 || true' EXIT

# A run of the built binary on the embedded config (README's first command)
# makes /var/log/rulogd as root before any package: the package takes it over.
mkdir -p /var/log/rulogd && chmod 0755 /var/log/rulogd
echo "== install $deb"
dpkg -i "$deb"
for f in /usr/sbin/rulogd /etc/rulogd.conf /etc/logrotate.d/rulogd \
         /usr/lib/systemd/system/rulogd.service /usr/share/man/man8/rulogd.8.gz \
         /usr/share/man/man5/rulogd.conf.5.gz /usr/share/doc/rulogd/sql/pgsql.sql \
         /usr/share/doc/rulogd/examples/ulogd.conf; do
    [ -e "$f" ] || fail "$f not installed"
done
getent passwd rulogd >/dev/null || fail "no rulogd system user"
for d in /var/lib/rulogd /var/log/rulogd; do
    [ "$(stat -c '%U:%G %a' "$d")" = "rulogd:rulogd 750" ] || fail "$d: $(stat -c '%U:%G %a' "$d")"
done
# Next to ulogd2: its files are all still its own.
dpkg -V ulogd2 || fail "installing rulogd changed ulogd2's files"

echo "== rulogd -t on the installed config and on Debian's ulogd.conf"
/usr/sbin/rulogd -t -c /etc/rulogd.conf >/dev/null
/usr/sbin/rulogd -t -c /etc/ulogd.conf >/dev/null

echo "== systemd-analyze"
systemd-analyze verify /usr/lib/systemd/system/rulogd.service
systemd-analyze security --offline=true --no-pager /usr/lib/systemd/system/rulogd.service | tail -1

echo "== remove, then purge"
dpkg -r rulogd
[ ! -e /usr/sbin/rulogd ] || fail "/usr/sbin/rulogd left after remove"
[ -e /etc/rulogd.conf ] || fail "remove must keep the conffile"
dpkg -P rulogd
for f in /etc/rulogd.conf /etc/logrotate.d/rulogd /var/lib/rulogd /var/log/rulogd; do
    [ ! -e "$f" ] || fail "$f left after purge"
done
trap - EXIT
echo "== package: ok"
