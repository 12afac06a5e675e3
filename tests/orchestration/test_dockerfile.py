"""The Dockerfile and .dockerignore, checked without Docker by parsing the instructions."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from config.settings import Settings

pytestmark = pytest.mark.no_db

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "python:3.11-slim-bookworm"
# ENV names the image sets for its own tools rather than for StockPulse settings.
TOOL_ENV = re.compile(
    r"^(PATH|PYTHON[A-Z_]*|PIP_[A-Z_]+|HF_HOME|STREAMLIT_[A-Z_]+|STOCKPULSE_[A-Z_]+)$"
)


@dataclass(frozen=True)
class Instruction:
    lineno: int
    command: str
    flags: dict[str, str]
    args: str

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list), f"line {self.lineno}: use the exec (JSON) form"
        return value


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction]

    def all(self, command: str) -> list[Instruction]:
        return [i for i in self.instructions if i.command == command]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined, comments dropped, leading --flags split."""
    out: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored
        if not buffer:
            start = lineno
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        line = " ".join(part for part in buffer if part)
        buffer = []
        command, _, rest = line.partition(" ")
        flags: dict[str, str] = {}
        while re.match(r"^--[a-z-]+=\S+", rest):
            flag, _, rest = rest.partition(" ")
            key, _, value = flag[2:].partition("=")
            flags[key] = value
            rest = rest.lstrip()
        out.append(Instruction(start, command.upper(), flags, rest.strip()))
    assert not buffer, "the Dockerfile ends inside a continued instruction"
    return out


def split_stages(instructions: list[Instruction]) -> list[Stage]:
    stages: list[Stage] = []
    for ins in instructions:
        if ins.command == "FROM":
            parts = ins.args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name, []))
        elif stages:
            stages[-1].instructions.append(ins)
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage.all("ENV"):
        for token in shlex.split(ins.args):
            key, _, value = token.partition("=")
            env[key] = value
    return env


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return split_stages(parse_dockerfile((ROOT / "Dockerfile").read_text()))


@pytest.fixture(scope="module")
def final(stages) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_multi_stage_build_on_the_pinned_slim_image(stages, final):
    assert len(stages) >= 2
    assert final.image == BASE_IMAGE
    names = [s.name for s in stages]
    assert "builder" in names and len(set(names)) == len(names)
    for stage in stages:
        assert ":" in stage.image and not stage.image.endswith(":latest"), stage.image


def test_builder_installs_pinned_requirements_into_a_venv_with_cpu_torch(stages):
    builder = next(s for s in stages if s.name == "builder")
    runs = " ".join(i.args for i in builder.all("RUN"))
    assert "python -m venv /opt/venv" in runs
    assert "pip install -r /tmp/requirements.txt" in runs
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs
    assert "^torch==" in runs, "torch's version comes from requirements.txt"
    pins = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^torch==\d+\.\d+\.\d+$", pins, re.M)


def test_final_stage_holds_only_the_venv_and_the_project(final):
    copies = final.all("COPY")
    from_builder = [c for c in copies if c.flags.get("from") == "builder"]
    assert [c.args for c in from_builder] == ["/opt/venv /opt/venv"]
    assert not any("pip install" in r.args for r in final.all("RUN"))
    assert not any("apt-get install" in r.args for r in final.all("RUN"))


def test_runs_as_an_unprivileged_user(final):
    users = final.all("USER")
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    last_run = max(i.lineno for i in final.all("RUN"))
    assert users[-1].lineno > last_run, "nothing runs as root after the USER switch"
    assert any("useradd --system --uid" in r.args and user in r.args for r in final.all("RUN"))


def test_entry_point_runs_the_start_up_steps_then_supervisord(final):
    [entrypoint] = final.all("ENTRYPOINT")
    [cmd] = final.all("CMD")
    assert entrypoint.exec_form() == ["python", "-m", "workers.startup", "--"]
    workdir = final.all("WORKDIR")[-1].args
    assert cmd.exec_form() == ["supervisord", "-c", f"{workdir}/supervisord.conf"]


def test_exposes_streamlit_with_a_health_check(final):
    assert [e.args for e in final.all("EXPOSE")] == ["8501"]
    [health] = final.all("HEALTHCHECK")
    assert {"interval", "timeout", "start-period", "retries"} <= set(health.flags)
    assert health.args.startswith("CMD ")
    command = health.args.removeprefix("CMD ")
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8501/_stcore/health" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")


def test_supercronic_is_pinned_and_checksum_verified(stages, final):
    cron = next(s for s in stages if s.name == "supercronic")
    args = {i.args.split("=", 1)[0]: i.args.split("=", 1)[-1] for i in cron.all("ARG")}
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["SUPERCRONIC_VERSION"])
    for arch in ("AMD64", "ARM64"):
        assert re.fullmatch(r"[0-9a-f]{40}", args[f"SUPERCRONIC_SHA1SUM_{arch}"])
    assert "sha1sum -c -" in " ".join(r.args for r in cron.all("RUN"))
    copies = [c.args for c in final.all("COPY") if c.flags.get("from") == "supercronic"]
    assert copies == ["/usr/local/bin/supercronic /usr/local/bin/supercronic"]


def ignored(path: str, patterns: list[str]) -> bool:
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
            result = not negated
    return result


def test_every_copy_source_exists_and_is_in_the_build_context(stages, dockerignore):
    for stage in stages:
        for copy in stage.all("COPY"):
            if "from" in copy.flags:
                continue
            *sources, _dest = shlex.split(copy.args)
            for source in sources:
                assert (ROOT / source).exists(), f"line {copy.lineno}: {source} is not in the repo"
                assert not ignored(source, dockerignore), f"{source} is excluded by .dockerignore"


def test_dockerignore_keeps_local_state_and_secrets_out(dockerignore):
    for path in (".venv", "var", "models", ".git", ".env", "var/pg/base", "app/__pycache__"):
        assert ignored(path, dockerignore), f".dockerignore must exclude {path}"
    for path in ("app", "workers", "ml", "db", "config", "requirements.txt", "supervisord.conf"):
        assert not ignored(path, dockerignore), path


def test_environment_names_real_settings_and_what_supervisord_needs(final):
    env = env_of(final)
    fields = {name.upper() for name in Settings.model_fields}
    unknown = {k for k in env if not TOOL_ENV.match(k) and k not in fields}
    assert not unknown, f"ENV names that are no setting: {sorted(unknown)}"
    # supervisord.conf defaults these for a local run (127.0.0.1, cron off); the image flips them.
    assert env["STOCKPULSE_APP_ADDRESS"] == "0.0.0.0"
    assert env["STOCKPULSE_CRON"] == "on"
    assert env["STOCKPULSE_HOME"] == final.all("WORKDIR")[-1].args
    assert env["STOCKPULSE_PYTHON"] == "/opt/venv/bin/python"
    conf = (ROOT / "supervisord.conf").read_text()
    needed = set(re.findall(r"%\(ENV_([A-Za-z0-9_]+)\)s", conf))
    assert needed, "supervisord.conf reads its paths from the environment"
    assert needed <= set(env), f"set in the image: {sorted(needed - set(env))}"


@pytest.mark.parametrize(
    ("analyst_password", "refused"),
    [(None, True), ("stockpulse-demo", True), ("a-long-analyst-passphrase", False)],
)
def test_the_image_runs_the_production_profile(final, monkeypatch, analyst_password, refused):
    """A plain `docker run` of the image loads the production profile: without a real analyst
    password (the demo's included) it refuses to start, naming the variable."""
    from config.settings import SettingsError, load_settings

    for name in list(os.environ):
        if name.upper() in {f.upper() for f in Settings.model_fields}:
            monkeypatch.delenv(name)
    for name, value in env_of(final).items():
        monkeypatch.setenv(name, value)
    if analyst_password is not None:
        monkeypatch.setenv("ANALYST_PASSWORD", analyst_password)
    if refused:
        with pytest.raises(SettingsError, match="set ANALYST_PASSWORD"):
            load_settings(_env_file=None)
    else:
        assert load_settings(_env_file=None).profile == "production"


def test_the_app_listens_on_every_interface_only_inside_a_container(final):
    """The image's address is 0.0.0.0 (a published port needs it); a run outside a container
    (supervisord.conf's default, `make demo`) keeps 127.0.0.1."""
    assert env_of(final)["STOCKPULSE_APP_ADDRESS"] == "0.0.0.0"
    conf = (ROOT / "supervisord.conf").read_text()
    assert '--server.address "${STOCKPULSE_APP_ADDRESS:-127.0.0.1}"' in conf
    demo = (ROOT / "scripts" / "demo.py").read_text()
    assert 'STOCKPULSE_APP_ADDRESS="127.0.0.1"' in demo


def test_compose_volumes_match_the_image_paths(final):
    env = env_of(final)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(v.split(":", 1) for v in compose["services"]["app"]["volumes"])
    assert mounts["models"] == env["MODELS_DIR"]
    assert mounts["state"] == env["DATA_DIR"], "the training lock is shared by the containers"
    assert env["MODEL_CONFIG_PATH"].startswith(env["MODELS_DIR"] + "/"), "registry persists"
    assert mounts["logs"] == env["STOCKPULSE_LOG_DIR"]
    assert env["STOCKPULSE_LOG_DIR"].startswith(env["DATA_DIR"] + "/")


def test_parser_reads_continuations_and_flags():
    text = "# c\nFROM a:1 AS b\nRUN one \\\n    # inside\n    two\nCOPY --from=b --chown=x /s /d\n"
    ins = parse_dockerfile(text)
    assert [(i.command, i.args) for i in ins] == [
        ("FROM", "a:1 AS b"),
        ("RUN", "one two"),
        ("COPY", "/s /d"),
    ]
    assert ins[2].flags == {"from": "b", "chown": "x"}


def test_every_package_of_the_project_is_copied_into_the_image(final):
    """The packages pyproject.toml installs (`pip install -e .` outside Docker) are the ones the
    image copies next to each other under its WORKDIR (found there through PYTHONPATH)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = sorted(p.removesuffix("*") for p in include)
    copied = {
        shlex.split(c.args)[0]
        for c in final.all("COPY")
        if "from" not in c.flags and shlex.split(c.args)[-1] == f"./{shlex.split(c.args)[0]}"
    }
    assert set(packages) <= copied, f"not copied: {sorted(set(packages) - copied)}"
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert on_disk <= set(packages), (
        f"packages pyproject.toml leaves out: {on_disk - set(packages)}"
    )
    env = env_of(final)
    assert env["PYTHONPATH"] == final.all("WORKDIR")[-1].args


def test_pre_commit_runs_what_make_lint_runs():
    """Each command of `make lint` is a pre-commit hook (and nothing else is)."""
    makefile = (ROOT / "Makefile").read_text()
    body = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    lint = {
        ln.strip().lstrip("@").replace("$(VENV)", ".venv").removesuffix(" .").strip()
        for ln in body.splitlines()[1:]
        if ln.strip()
    }
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["entry"] for repo in config["repos"] for h in repo["hooks"]}
    assert hooks == lint
    pins = (ROOT / "requirements-dev.txt").read_text()
    assert re.search(r"^pre-commit==\d+\.\d+\.\d+$", pins, re.M)
