"""docs/deploy.md's step 1 labels every node role the rendered pods select: a pod whose nodeSelector no documented
`kubectl label node` sets stays Pending on a cluster set up as the page says (both overlays include
deploy/monitoring, whose Prometheus and Grafana run on `role.kos.example.com/base=true` nodes)."""

from __future__ import annotations

from typing import Any

from deploy_helpers import OVERLAYS, documented_commands


def _documented_labels() -> set[str]:
    """`key=value` of every `kubectl label node NODE... key=value...` in docs/deploy.md."""
    out = set()
    for argv in documented_commands("kubectl"):
        if argv[1:3] == ["label", "node"]:
            out |= {a for a in argv[3:] if "=" in a and not a.startswith("-")}
    return out


def _selected_labels(objects: list[dict[str, Any]]) -> dict[str, set[str]]:
    """`key=value` → the workloads whose pod template selects it."""
    out: dict[str, set[str]] = {}
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            for k, v in (o["spec"]["template"]["spec"].get("nodeSelector") or {}).items():
                out.setdefault(f"{k}={v}", set()).add(f"{o['kind']} {o['metadata']['name']}")
    return out


def test_every_node_selector_of_either_overlay_is_a_label_the_page_sets(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    documented = _documented_labels()
    assert "role.kos.example.com/control=true" in documented  # the parse finds step 1
    for overlay in OVERLAYS:
        selected = _selected_labels(rendered[overlay])
        assert selected
        missing = {label: sorted(w) for label, w in selected.items() if label not in documented}
        assert missing == {}, f"{overlay}: node labels no `kubectl label node` in docs/deploy.md sets"
