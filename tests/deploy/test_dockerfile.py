"""The container image (Dockerfile), checked without a Docker daemon.

The Dockerfile is read with a real parser (dockerfile-parse). Its builder stage is replayed:
the files it COPYs are copied from this checkout and its RUN steps (venv, pip install) run into
a fresh venv under tmp_path, so the image's install steps cannot rot. Its HEALTHCHECK command
runs against a live gateway, and its ENTRYPOINT against the installed CLI.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from tests.conftest import make_settings, run_gateway

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BASE_IMAGE = "python:3.11-slim-bookworm"
VENV = "/opt/venv"
BUILD_TOOLS = {"gcc", "g++", "cc", "build-essential", "make", "python3-dev", "git", "pip"}

Instruction = dict[str, Any]


def parsed() -> DockerfileParser:
    parser = DockerfileParser(path=str(DOCKERFILE))
    assert parser.content.strip(), "empty Dockerfile"
    return parser


def stages() -> list[list[Instruction]]:
    """The instructions of each build stage, FROM first."""
    result: list[list[Instruction]] = []
    for instruction in parsed().structure:
        if instruction["instruction"] == "FROM":
            result.append([])
        if instruction["instruction"] != "COMMENT":
            assert result, "an instruction before the first FROM"
            result[-1].append(instruction)
    return result


def values(stage: list[Instruction], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def one(stage: list[Instruction], name: str) -> str:
    found = values(stage, name)
    assert len(found) == 1, f"expected one {name}, found {found}"
    return found[0]


def exec_form(text: str) -> list[str]:
    """An exec-form (JSON array) argument list; shell form is refused."""
    argv = json.loads(text)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), text
    return argv


def healthcheck_command() -> list[str]:
    text = one(stages()[-1], "HEALTHCHECK")
    options, _, command = text.partition("CMD")
    assert command, f"HEALTHCHECK without CMD: {text}"
    for option in shlex.split(options):
        assert option.startswith("--"), option
    return exec_form(command.strip())


def entrypoint() -> list[str]:
    return exec_form(one(stages()[-1], "ENTRYPOINT"))


def option(argv: list[str], flag: str) -> str:
    """The value of the last `flag` in argv (argparse's last one wins)."""
    positions = [index for index, arg in enumerate(argv) if arg == flag]
    assert positions, f"{flag} missing from {argv}"
    return argv[positions[-1] + 1]


# -- the parsed Dockerfile -------------------------------------------------------------------


def test_two_stages_on_debian_slim_python_311() -> None:
    assert parsed().parent_images == [BASE_IMAGE, BASE_IMAGE]
    builder, final = stages()
    assert one(builder, "FROM").split()[-2:] == ["AS", "builder"]
    assert one(final, "FROM") == BASE_IMAGE


def test_final_stage_has_no_build_tools_and_takes_only_the_venv() -> None:
    final = stages()[-1]
    for command in values(final, "RUN"):
        assert "apt-get" not in command and "apk" not in command, command
        words = set(re.split(r"[\s;&|()]+", command))
        assert not words & BUILD_TOOLS, command
    copies = [shlex.split(value) for value in values(final, "COPY") + values(final, "ADD")]
    assert copies == [["--from=builder", VENV, VENV]]
    env = one(final, "ENV")
    assert f'PATH="{VENV}/bin:' in env, env
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # the root filesystem is read-only in the chart


def test_runs_as_a_numeric_non_root_user_the_image_creates() -> None:
    final = stages()[-1]
    user = one(final, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, user
    assert gid.isdigit() and int(gid) != 0, user
    setup = " ".join(values(final, "RUN"))
    assert f"useradd --uid {uid} --gid {gid}" in setup
    assert f"groupadd --gid {gid}" in setup
    assert f"chown {uid}:{gid} /data" in setup  # the volume's mount point is the user's
    # USER comes after every RUN: nothing later runs as root.
    names = [i["instruction"] for i in final]
    assert max(i for i, name in enumerate(names) if name == "RUN") < names.index("USER")


def test_data_volume_port_and_exec_form_entrypoint() -> None:
    final = stages()[-1]
    assert exec_form(one(final, "VOLUME")) == ["/data"]
    assert one(final, "EXPOSE").split() == ["8080"]
    argv = entrypoint()
    assert argv[:2] == ["ce-gateway", "serve"]
    assert option(argv, "--config") == "/etc/ce-gateway/config.yaml"
    assert option(argv, "--data-dir") == "/data"
    assert option(argv, "--host") == "0.0.0.0"
    assert values(final, "CMD") == []  # `docker run IMAGE --port 9090` appends to serve


def test_healthcheck_is_python_urllib_on_healthz() -> None:
    argv = healthcheck_command()
    assert argv[:2] == ["python", "-c"], argv  # slim images have no curl or wget
    assert "urllib.request" in argv[2] and "http://127.0.0.1:8080/healthz" in argv[2]


async def test_healthcheck_passes_on_a_live_gateway_and_fails_without_one(
    tmp_path: Path, closed_port: int
) -> None:
    code = healthcheck_command()[2]

    def probe(port: int) -> subprocess.CompletedProcess[str]:
        script = code.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        return subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=15
        )

    async with run_gateway(make_settings(tmp_path)) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        healthy = await asyncio.to_thread(probe, port)
    assert healthy.returncode == 0, healthy.stderr
    refused = probe(closed_port)
    assert refused.returncode != 0
    assert "Connection refused" in refused.stderr or "URLError" in refused.stderr


# -- .dockerignore ---------------------------------------------------------------------------


def ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "this check knows no exceptions"
    return patterns


def ignored(path: str) -> bool:
    """Docker's rule, for the pattern forms used here: a path is left out of the build
    context when it or one of its parents matches; `**/` matches at any depth."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in ignore_patterns():
        for candidate in candidates:
            if fnmatch.fnmatchcase(candidate, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatchcase(
                candidate.rsplit("/", 1)[-1], pattern[3:]
            ):
                return True
    return False


def builder_copies() -> list[tuple[list[str], str]]:
    """The builder's COPY instructions as (sources, destination)."""
    copies = []
    for value in values(stages()[0], "COPY"):
        args = shlex.split(value)
        assert not any(a.startswith("--") for a in args), value
        copies.append((args[:-1], args[-1]))
    return copies


def test_dockerignore_keeps_local_state_out_but_not_what_the_build_copies() -> None:
    for local in (".git", ".venv", "data", "gateway/__pycache__", "x.egg-info", ".pytest_cache"):
        assert ignored(local), local
    for sources, _ in builder_copies():
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source), f"{source} is COPYed but .dockerignore leaves it out"
            if (ROOT / source).is_dir():
                assert not ignored(f"{source}/__init__.py"), source


# -- the builder stage, replayed -------------------------------------------------------------


def stage_env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in values(stage, "ENV"):
        for pair in shlex.split(value):
            key, _, setting = pair.partition("=")
            env[key] = setting
    return env


def copy_context(destination: Path) -> None:
    """What the builder's COPY instructions put under its WORKDIR, from this checkout, with
    Docker's rules: a directory's contents go to the target; files go into a target that ends
    in `/` (or takes several sources), else become it."""
    for sources, target in builder_copies():
        into = destination / target
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(
                    origin,
                    into,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )
            elif target.endswith("/") or len(sources) > 1:
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, into / origin.name)
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, into)


def default_config_text() -> str:
    """The configuration file the final stage writes (`printf '%s\\n' LINE... > FILE`)."""
    (command,) = [c for c in values(stages()[-1], "RUN") if "/etc/ce-gateway/config.yaml" in c]
    step = command.split("&&")[-1]
    printed, _, target = step.partition(">")
    assert target.strip() == "/etc/ce-gateway/config.yaml", step
    words = shlex.split(printed)
    assert words[:2] == ["printf", "%s\\n"], words
    return "\n".join(words[2:]) + "\n"


@pytest.mark.timeout(300)
def test_install_steps_build_a_venv_that_runs_the_cli(tmp_path: Path) -> None:
    builder = stages()[0]
    assert one(builder, "WORKDIR") == "/src"
    source = tmp_path / "src"
    source.mkdir()
    copy_context(source)
    venv = tmp_path / "venv"
    env = {**os.environ, **stage_env(builder)}
    runs = values(builder, "RUN")
    assert runs, "the builder runs nothing"
    for command in runs:
        words = shlex.split(command)
        # Teach this test about any new kind of step rather than running it blind.
        assert words == ["python3", "-m", "venv", VENV] or words[:2] == [
            f"{VENV}/bin/pip",
            "install",
        ], command
        assert words[-1] != "-e" and "--editable" not in words, command
        replayed = [word.replace(VENV, str(venv)) for word in words]
        done = subprocess.run(
            replayed, cwd=source, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    shutil.rmtree(source)  # the image keeps only the venv: nothing may point back at /src
    cli = venv / "bin" / "ce-gateway"
    helped = subprocess.run([cli, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert "serve" in helped.stdout and "validate-config" in helped.stdout

    # The ENTRYPOINT's flags are the CLI's: it reads the --config given (here one with a bad
    # retention) and refuses it by key path, before opening anything.
    config = tmp_path / "config.yaml"
    config.write_text("topics: [{name: orders, retention: 9x}]\n")
    argv = entrypoint()
    argv[argv.index("--config") + 1] = str(config)
    argv[argv.index("--data-dir") + 1] = str(tmp_path / "data")
    started = subprocess.run(
        [venv / "bin" / argv[0], *argv[1:]], capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 2, started.stderr
    assert "configuration error: topics[0].retention" in started.stderr
    assert not (tmp_path / "data").exists()

    # The image's own default configuration file is one the gateway accepts.
    config.write_text(default_config_text())
    checked = subprocess.run(
        [cli, "validate-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    assert "ok (0 topics, 0 subscriptions)" in checked.stdout


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
