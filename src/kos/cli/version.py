"""`kos version`: the version and the commit this kos was built from, so a report, a log or a bug names both.

The version is the package's (hatch-vcs makes it from the git tag at build time: `v0.2.0` → `0.2.0`, and
between tags `0.2.1.devN+g<commit>`); CHANGELOG.md says what each holds. The commit comes from, in order:
the source checkout this kos runs from (an editable install: `git rev-parse HEAD`, `-dirty` with uncommitted
changes), the file the image build writes (`<venv>/share/kos/commit`, Containerfile), and the `+g<commit>` of
a version built between tags; else `unknown`.

    $ kos version
    kos 0.2.0
    commit 1c420cc1d6a0e1c0f6f8b1f2b5b1ec1a0a0f3e2d
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import kos
from kos.cli.common import add_logging_flags

IMAGE_COMMIT_FILE = Path(sys.prefix) / "share" / "kos" / "commit"
"""Where the image's build writes the commit it was built from (Containerfile, `KOS_COMMIT`)."""

_LOCAL_COMMIT = re.compile(r"\+g([0-9a-f]{7,40})\b")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_logging_flags(p)


@dataclasses.dataclass(frozen=True, slots=True)
class VersionSettings:
    """Nothing to choose: `kos version` takes no flags but the logging ones."""


def settings_from(_: argparse.Namespace) -> VersionSettings:
    return VersionSettings()


def run(_: VersionSettings) -> int:
    print(f"kos {kos.__version__}")
    print(f"commit {commit(kos.__version__)}")
    return 0


def commit(version: str, *, source: Path | None = None, image_file: Path = IMAGE_COMMIT_FILE) -> str:
    """The commit this kos was built from (the module docstring's order); `unknown` when nothing says.

    `source` is the directory holding the `kos` package's source tree (default: the one imported).
    """
    found = checkout_commit(source if source is not None else Path(kos.__file__).resolve().parents[2])
    if found:
        return found
    try:
        written = image_file.read_text().strip()
    except OSError:
        written = ""
    if written and written != "unknown":
        return written
    local = _LOCAL_COMMIT.search(version)
    return local.group(1) if local else "unknown"


def checkout_commit(root: Path) -> str | None:
    """HEAD of the git checkout at `root` (with `-dirty` if files differ from it), or None if `root` is not
    the top of one or git is missing."""
    if not (root / ".git").exists() or not (root / "pyproject.toml").is_file():
        return None
    try:
        head = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.strip()
