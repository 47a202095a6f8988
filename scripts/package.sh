#!/usr/bin/env bash
# Builds pgbak's .deb, .rpm and tarball (what they hold and where: README.md, "Install from
# packages").
#   scripts/package.sh                                  # release build, all three in target/packages/
#   scripts/package.sh --binary FILE --out DIR --fast   # package a binary already built (the test's)
# The man pages and shell completions come from the packaged binary itself; the systemd units
# and the env file from contrib/, with the packaged paths (/usr/bin/pgbak, /var/lib/pgbak).
# Needs cargo-deb and cargo-generate-rpm: scripts/setup.sh installs them into .tools/cargo.
# SOURCE_DATE_EPOCH (default: the last commit's time) dates the changelog and the RPM's files.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    cat <<'USAGE'
usage: scripts/package.sh [--binary FILE] [--out DIR] [--fast] [--deb-only | --rpm-only]
  --binary FILE  package this pgbak binary instead of building target/release/pgbak
  --out DIR      where the .deb, .rpm and .tar.gz go (default: target/packages)
  --fast         quicker, larger compression (tests)
USAGE
}

binary="" out="target/packages" fast=0 deb=1 rpm=1
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="${2:?--binary needs a file}"; shift 2 ;;
        --out) out="${2:?--out needs a directory}"; shift 2 ;;
        --fast) fast=1; shift ;;
        --deb-only) rpm=0; shift ;;
        --rpm-only) deb=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "package: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

say() { echo "package: $*" >&2; }
export PATH="$PWD/.tools/cargo/bin:$PATH"
need=()
[ "$deb" -eq 1 ] && need+=(cargo-deb)
[ "$rpm" -eq 1 ] && need+=(cargo-generate-rpm)
for tool in "${need[@]}"; do
    command -v "$tool" >/dev/null || { say "$tool is missing: run scripts/setup.sh"; exit 2; }
done

if [ -z "$binary" ]; then
    cargo build --release --locked
    binary="target/release/pgbak"
fi
[ -x "$binary" ] || { say "$binary is not an executable"; exit 2; }
: "${SOURCE_DATE_EPOCH:=$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
maintainer="$(sed -n 's/^maintainer = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"

# The staging area Cargo.toml's asset lists name.
assets="target/pkg-assets"
rm -rf "$assets"
mkdir -p "$assets"/{bin,man,completions,units,doc}
if command -v strip >/dev/null; then
    strip --remove-section=.comment -o "$assets/bin/pgbak" "$binary"
else
    cp "$binary" "$assets/bin/pgbak"
fi
chmod 0755 "$assets/bin/pgbak"
pgbak="$assets/bin/pgbak"
"$pgbak" --version >&2
"$pgbak" --quiet man --dir "$assets/man"
"$pgbak" completions bash >"$assets/completions/pgbak.bash"
"$pgbak" completions zsh >"$assets/completions/_pgbak"
"$pgbak" completions fish >"$assets/completions/pgbak.fish"

# contrib/'s unit runs /usr/local/bin/pgbak (a hand install) and writes the example's
# backup directory; the packaged one runs /usr/bin/pgbak and writes under /var/lib/pgbak.
sed -e 's|/usr/local/bin/pgbak|/usr/bin/pgbak|g' \
    -e 's|^ReadWritePaths=/var/backups/enterprise-agents$|ReadWritePaths=/var/lib/pgbak|' \
    -e '/^# Install (see /,/^#   systemctl daemon-reload/c\
# Installed by the pgbak package: set DATABASE_URL and the rest in /etc/pgbak/pgbak.env\
# (pgbak cron --env-file /etc/pgbak/pgbak.env --check-config checks it), then\
#   systemctl enable --now pgbak.timer' \
    contrib/pgbak.service >"$assets/units/pgbak.service"
cp contrib/pgbak.timer "$assets/units/pgbak.timer"
# The weekly restore drill (not enabled either): the same paths.
sed -e 's|/usr/local/bin/pgbak|/usr/bin/pgbak|g' \
    -e 's|^ReadWritePaths=/var/backups/enterprise-agents$|ReadWritePaths=/var/lib/pgbak|' \
    -e '/^# Install (see /,/^#   systemctl daemon-reload/c\
# Installed by the pgbak package: it reads /etc/pgbak/pgbak.env as pgbak.service does;\
#   systemctl enable --now pgbak-drill.timer' \
    contrib/pgbak-drill.service >"$assets/units/pgbak-drill.service"
cp contrib/pgbak-drill.timer "$assets/units/pgbak-drill.timer"
sed -e 's|^BACKUP_DIR=/var/backups/enterprise-agents$|BACKUP_DIR=/var/lib/pgbak/backups|' \
    contrib/pgbak.env.example >"$assets/pgbak.env"
for file in "$assets/units/pgbak.service" "$assets/units/pgbak-drill.service" "$assets/pgbak.env"; do
    if grep -q -e /usr/local/bin -e /var/backups/enterprise-agents "$file"; then
        say "$file still names a hand-install path: update the substitutions above"
        exit 1
    fi
done

gzip -9n <README.md >"$assets/doc/README.md.gz"
# Debian's name for the upstream changelog.
gzip -9n <CHANGELOG.md >"$assets/doc/changelog.gz"
cat >"$assets/changelog" <<CHANGELOG
pgbak ($version-1) unstable; urgency=medium

  * pgbak $version: see /usr/share/doc/pgbak/changelog.gz.

 -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")
CHANGELOG

mkdir -p "$out"
if [ "$deb" -eq 1 ]; then
    args=(--no-build --no-strip --output "$out")
    [ "$fast" -eq 1 ] && args+=(--fast)
    cargo-deb deb "${args[@]}" >&2
fi
if [ "$rpm" -eq 1 ]; then
    args=(--output "$out" --source-date "$SOURCE_DATE_EPOCH")
    [ "$fast" -eq 1 ] && args+=(--payload-compress gzip)
    cargo-generate-rpm generate-rpm "${args[@]}" >&2
fi

# The tarball, for hosts without either package manager: the binary, its pages and
# completions, and contrib/ as it is (a hand install puts pgbak in /usr/local/bin).
name="pgbak-$version-$(uname -m)-linux"
tree="$assets/tarball/$name"
mkdir -p "$tree/man/man1" "$tree/completions" "$tree/contrib"
cp "$assets/bin/pgbak" "$tree/pgbak"
cp "$assets"/man/*.1 "$tree/man/man1/"
cp "$assets"/completions/* "$tree/completions/"
cp contrib/pgbak.service contrib/pgbak.timer contrib/pgbak-drill.service contrib/pgbak-drill.timer \
    contrib/pgbak.env.example contrib/pgbak.crontab "$tree/contrib/"
cp README.md CHANGELOG.md "$tree/"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    -C "$assets/tarball" -cf - "$name" | gzip -9n >"$out/$name.tar.gz"

ls -1 "$out"/pgbak*"$version"*.{deb,rpm,tar.gz} 2>/dev/null || true
