"""kos: a virtual-network control plane built on Kubernetes API machinery, with an Open vSwitch data plane."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """`kos.__version__`: the installed package's version (from the git tag, pyproject.toml), read on first use
    so that importing kos does not load importlib.metadata."""
    if name != "__version__":
        raise AttributeError(f"module 'kos' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("kos")
    except PackageNotFoundError:  # run from a source tree that was never installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
