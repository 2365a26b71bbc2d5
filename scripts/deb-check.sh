#!/usr/bin/env bash
# Builds the Debian package with cargo-deb, installs it on this machine with
# dpkg, checks what it installed, and removes it again. Needs root and
# cargo-deb (cargo install cargo-deb). Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo deb -p ringcast
deb=$(ls -t target/debian/ringcast_*.deb | head -n1)
echo "package: $deb"
dpkg-deb --info "$deb"
# Leave nothing behind, whatever fails below.
trap 'dpkg --purge ringcast >/dev/null 2>&1 || true' EXIT
dpkg -i "$deb"
/usr/bin/ringcast --version
/usr/bin/ringcast --check-config --config /etc/ringcast/ringcast.toml
files=$(dpkg -L ringcast)
for f in /usr/bin/ringcast /lib/systemd/system/ringcast.service /etc/ringcast/ringcast.toml \
         /usr/lib/sysctl.d/60-ringcast.conf /usr/share/doc/ringcast/README.md \
         /usr/share/doc/ringcast/LICENSE-MIT /usr/share/doc/ringcast/LICENSE-APACHE \
         /usr/share/doc/ringcast/copyright; do
  grep -qx "$f" <<<"$files" || { echo "deb-check: $f is missing from the package"; echo "$files"; exit 1; }
done
# The guides and every example file the operations guide names, each
# identical to the repository's copy.
for src in docs/*.md tuning/nginx/*.conf tuning/prometheus/*.yml tuning/grafana/*.json tuning/k8s/*.yaml; do
  case $src in
    docs/*) dst=/usr/share/doc/ringcast/docs/${src#docs/} ;;
    *) dst=/usr/share/doc/ringcast/examples/${src#tuning/} ;;
  esac
  grep -qx "$dst" <<<"$files" || { echo "deb-check: $dst ($src) is missing from the package"; echo "$files"; exit 1; }
  cmp -s "$src" "$dst" || { echo "deb-check: $dst differs from $src"; exit 1; }
done
# The configuration is a conffile: an upgrade keeps the operator's edits.
grep -qx /etc/ringcast/ringcast.toml "/var/lib/dpkg/info/ringcast.conffiles" \
  || { echo "deb-check: /etc/ringcast/ringcast.toml is not a conffile"; exit 1; }
# An edited conffile survives reinstalling the same package.
echo "# edited by deb-check" >> /etc/ringcast/ringcast.toml
dpkg -i --force-confold "$deb" >/dev/null
grep -q "edited by deb-check" /etc/ringcast/ringcast.toml \
  || { echo "deb-check: the upgrade replaced the edited configuration"; exit 1; }
if command -v systemd-analyze >/dev/null 2>&1; then
  # Checks the unit's syntax and that ExecStart exists; a container without
  # systemd as PID 1 can still run it.
  systemd-analyze verify /lib/systemd/system/ringcast.service
else
  echo "(systemd-analyze not installed: unit not verified)"
fi
dpkg -r ringcast
[ ! -e /usr/bin/ringcast ] || { echo "deb-check: /usr/bin/ringcast left after dpkg -r"; exit 1; }
echo "deb-check: ok"
