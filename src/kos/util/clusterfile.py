"""`<state-dir>/cluster.json`: where each process of a running `kos up` is, for operators and tests.

    {"components": [{"name": "apiserver", "role": "apiserver", "pid": 4242,
                     "url": "https://127.0.0.1:8080", "metrics_url": "https://127.0.0.1:8080/metrics"}, ...],
     "kubeconfig": "/abs/path/to/<state-dir>/kubeconfig"}

`role` is one of ROLES; `url` is the component's client URL (apiservers and etcd members; null for the
others); `metrics_url` its Prometheus `/metrics` (https with a secure cluster: verify it against
`<state-dir>/pki/ca.crt`, or `<state-dir>/pki/etcd/ca.crt` with the etcd client certificate for etcd);
`pid` the process now running it (null while it is being restarted).

The file is replaced whole (a temporary file in the same directory, then `os.replace`), so a reader never
sees half of it; `kos up` rewrites it whenever a child (re)starts, and removes it on a clean shutdown. A file
left by a `kos up` that was itself killed names processes that are gone (or pids since reused): check them.

It lives in kos.util so that both its writer (kos.cli.cluster) and its readers (`kos chaos`, kos.chaos.cluster;
tests) can import it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

FILE_NAME = "cluster.json"
ROLES = frozenset({"etcd", "apiserver", "controller-manager", "simnodes", "agent", "prometheus"})


@dataclasses.dataclass(frozen=True, slots=True)
class Component:
    """One process of the cluster as cluster.json lists it."""

    name: str
    role: str
    pid: int | None
    url: str | None
    metrics_url: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterFile:
    """What cluster.json says: the components in `kos up`'s start order and the admin's kubeconfig."""

    components: tuple[Component, ...]
    kubeconfig: Path

    def by_role(self, role: str) -> list[Component]:
        """The components of `role`, in order."""
        return [c for c in self.components if c.role == role]


def read(path: Path) -> ClusterFile:
    """The cluster.json at `path`. Raises OSError if it cannot be read (FileNotFoundError: no `kos up` runs
    there), ValueError if it is not such a file."""
    try:
        doc = json.loads(path.read_text())
        comps = tuple(_component(c) for c in doc["components"])
        return ClusterFile(comps, Path(doc["kubeconfig"]))
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path} is not a kos cluster.json: {type(e).__name__}: {e}") from None


def _component(c: dict[str, object]) -> Component:
    pid = c["pid"]
    url, metrics = c["url"], c["metrics_url"]
    return Component(str(c["name"]), str(c["role"]), None if pid is None else int(str(pid)),
                     None if url is None else str(url), None if metrics is None else str(metrics))  # fmt: skip


def write(path: Path, components: Sequence[Component], kubeconfig: Path) -> None:
    """Replace `path` atomically with `components` and `kubeconfig` (made absolute). Raises ValueError for a
    role not in ROLES, OSError if the directory cannot be written."""
    for c in components:
        if c.role not in ROLES:
            raise ValueError(f"{c.name}: role {c.role!r} is not one of {sorted(ROLES)}")
    doc = {"components": [dataclasses.asdict(c) for c in components], "kubeconfig": str(kubeconfig.resolve())}
    fd, tmp = tempfile.mkstemp(prefix=f".{FILE_NAME}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove(path: Path) -> None:
    """Remove `path` if it is there (a clean shutdown)."""
    path.unlink(missing_ok=True)
