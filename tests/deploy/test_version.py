"""`kos version`: the version and the commit, the commit found in the order kos.cli.version documents."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import kos
from kos.cli import version
from kos.cli.main import main


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'kos'\n")
    git(root, "init", "-q")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "pyproject.toml")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "one")
    return root


def test_a_checkout_names_its_head_and_whether_it_is_dirty(checkout: Path, tmp_path: Path) -> None:
    head = git(checkout, "rev-parse", "HEAD")
    image_file = tmp_path / "commit"
    image_file.write_text("f" * 40 + "\n")
    assert version.commit("0.2.0", source=checkout, image_file=image_file) == head
    (checkout / "pyproject.toml").write_text("changed\n")
    assert version.commit("0.2.0", source=checkout, image_file=image_file) == head + "-dirty"


def test_outside_a_checkout_the_image_file_then_the_version(tmp_path: Path) -> None:
    image_file = tmp_path / "commit"
    image_file.write_text("abc1234def\n")
    assert version.commit("0.2.1.dev3+g1234567", source=tmp_path, image_file=image_file) == "abc1234def"
    image_file.write_text("unknown\n")  # an image built without KOS_COMMIT
    assert version.commit("0.2.1.dev3+g1234567", source=tmp_path, image_file=image_file) == "1234567"
    image_file.unlink()
    assert version.commit("0.2.0", source=tmp_path, image_file=image_file) == "unknown"


def test_kos_version_prints_both(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"kos {kos.__version__}"
    assert lines[1].startswith("commit ") and lines[1] != "commit "
    assert kos.__version__ != "0.0.0+unknown"  # the package is installed: its version came from the metadata
