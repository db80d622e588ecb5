"""A small client of Prometheus' HTTP API (`/api/v1/...`), for `kos demo --monitoring`'s plots and the tests.

Blocking (urllib): its callers run it in a thread (`asyncio.to_thread`) or in tests. Prometheus answers with
`{"status": "success", "data": ...}` or `{"status": "error", "errorType": ..., "error": ...}` (with 400 or 422
for a bad query); https://prometheus.io/docs/prometheus/latest/querying/api/.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT = 10.0
"""Seconds one call may take."""


class PrometheusAPI:
    """Prometheus at `url` (https verified against `context`). Every call raises OSError when Prometheus cannot be
    reached and RuntimeError for an answer whose status is not "success" (a bad query: Prometheus' error)."""

    def __init__(self, url: str, context: ssl.SSLContext | None = None) -> None:
        self.url = url.rstrip("/")
        self.context = context

    def get(self, path: str, **params: str) -> Any:
        """The `data` of GET `path` with `params`."""
        q = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{q}", timeout=TIMEOUT, context=self.context) as r:
                doc = json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400/422: a bad query, Prometheus' error in the body
            try:
                doc = json.loads(e.read() or b"{}")
            except ValueError:
                doc = {"error": str(e)}
        if doc.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} {params}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now: [{"metric": {label: value}, "value": [t, "v"]}, ...] (a
        scalar as one sample with no labels)."""
        data = self.get("/api/v1/query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """`expr` from `start` to `end` (epoch seconds) every `step` seconds: [{"metric": {...}, "values":
        [[t, "v"], ...]}, ...]."""
        data = self.get("/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets: [{"labels": {...}, "scrapeUrl": ..., "health": "up", "lastScrape":
        RFC 3339, "lastError": ...}, ...]."""
        active: list[dict[str, Any]] = self.get("/api/v1/targets", state="active")["activeTargets"]
        return active
