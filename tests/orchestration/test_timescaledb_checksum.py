"""The TimescaleDB source is verified against the SHA-256 pinned in scripts/timescaledb.sha256
before anything of it is unpacked: the vendored tarball passes, a tarball with one byte changed
is refused naming the expected and the actual digest, by `--verify` alone, by the build itself
and for a download (deleted, never cached). The build never gets as far as compiling here:
pg_config, cmake, make and curl are stubs."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.no_db

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "scripts" / "build_timescaledb.sh"
PINNED = ROOT / "scripts" / "timescaledb.sha256"
VERSION = "2.29.2"
NAME = f"timescaledb-{VERSION}.tar.gz"


def vendored() -> Path:
    """The vendored source tarball, found as the build script finds it (a `shared/vendor`
    folder beside or above the checkout)."""
    for folder in list(ROOT.parents)[:3]:
        path = folder / "shared" / "vendor" / NAME
        if path.exists():
            return path
    pytest.skip(f"no vendored {NAME} beside or above this checkout")


def pinned_digest() -> str:
    [digest] = [line.split()[0] for line in PINNED.read_text().splitlines() if NAME in line]
    return digest


def tampered(tmp_path: Path) -> Path:
    """A copy of the vendored tarball with one byte changed (without the vendored tarball, any
    other bytes: the digest differs from the pinned one either way, so these tests always run;
    only the test that the real tarball passes needs it)."""
    copy = tmp_path / NAME
    try:
        shutil.copyfile(vendored(), copy)
    except pytest.skip.Exception:
        copy.write_bytes(os.urandom(8192))
    with copy.open("r+b") as f:
        f.seek(4000)
        byte = f.read(1)
        f.seek(4000)
        f.write(bytes([byte[0] ^ 0xFF]))
    return copy


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stubs(tmp_path: Path) -> dict[str, str]:
    """An environment whose embedded server lacks TimescaleDB (a pg_config stub), whose cmake,
    make and curl are stubs (curl serves `tmp_path/served.tar.gz`), and whose cache is empty."""
    pginstall = tmp_path / "pginstall"
    (pginstall / "bin").mkdir(parents=True)
    (pginstall / "lib").mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        pginstall / "bin" / "pg_config": (
            f'case "$1" in --pkglibdir) echo {pginstall}/lib;; '
            "--version) echo 'PostgreSQL 18.6';; esac"
        ),
        tmp_path / "python": f"echo {pginstall}",
        bin_dir / "cmake": "echo cmake ran >&2; exit 1",
        bin_dir / "make": "echo make ran >&2; exit 1",
        bin_dir / "curl": (
            'while [ $# -gt 0 ]; do [ "$1" = -o ] && out="$2"; shift; done; '
            f'cp {tmp_path / "served.tar.gz"} "$out"'
        ),
    }
    for path, body in scripts.items():
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return {
        **os.environ,
        "PY": str(tmp_path / "python"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }


def run(
    script: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args],
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_pinned_digest_is_the_vendored_tarball_s() -> None:
    assert pinned_digest() == sha256(vendored())
    proc = run(BUILD, "--verify", str(vendored()))
    assert proc.returncode == 0, proc.stderr
    assert f"matches the SHA-256 pinned for TimescaleDB {VERSION}" in proc.stdout


def test_a_tampered_tarball_fails_verification_naming_both_digests(tmp_path: Path) -> None:
    copy = tampered(tmp_path)
    proc = run(BUILD, "--verify", str(copy))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"{copy} is not the pinned TimescaleDB {VERSION} source: SHA-256 expected "
        f"{pinned_digest()} (from {PINNED}), actual {sha256(copy)}"
    )


def test_the_build_stops_before_unpacking_a_tampered_source(tmp_path: Path) -> None:
    env = {**stubs(tmp_path), "TIMESCALEDB_SRC": str(tampered(tmp_path))}
    proc = run(BUILD, env=env)
    assert proc.returncode == 1
    assert f"SHA-256 expected {pinned_digest()}" in proc.stderr
    assert "cmake ran" not in proc.stderr and "building" not in proc.stdout
    assert not (tmp_path / "cache" / "stockpulse").exists()  # nothing cached
    demo = run(BUILD, "--if-possible", env={**env, "CC": "sh"})  # make demo: says why, goes on
    assert demo.returncode == 3
    assert (
        demo.stdout.strip()
        .splitlines()[-1]
        .startswith(f"TimescaleDB {VERSION} not built: {tmp_path / NAME} is not the pinned")
    )


def test_a_tampered_download_is_deleted_not_cached(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"  # no shared/vendor beside or above it: the source is fetched
    (checkout / "scripts").mkdir(parents=True)
    for f in (BUILD, PINNED):
        shutil.copy(f, checkout / "scripts" / f.name)
    shutil.move(tampered(tmp_path), tmp_path / "served.tar.gz")
    proc = run(checkout / "scripts" / BUILD.name, env=stubs(tmp_path))
    assert proc.returncode == 1
    assert f"SHA-256 expected {pinned_digest()}" in proc.stderr
    assert f"actual {sha256(tmp_path / 'served.tar.gz')}" in proc.stderr
    assert "(downloaded from https://github.com/timescale/timescaledb/" in proc.stderr
    assert list((tmp_path / "cache" / "stockpulse").iterdir()) == []  # deleted, never cached
