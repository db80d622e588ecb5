"""A raw HTTP view of an apiserver for tests: status codes and JSON bodies, no client-side interpretation."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from kos.http.lines import LineSplitter

GV = "/apis/network.example.com/v1alpha1"


@dataclasses.dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def rv(self) -> str:
        return str(self.body["metadata"]["resourceVersion"])


class RawAPI:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> RawAPI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @staticmethod
    def path(plural: str, namespace: str | None = None, name: str = "", sub: str = "") -> str:
        p = f"{GV}/namespaces/{namespace}/{plural}" if namespace else f"{GV}/{plural}"
        if name:
            p += f"/{name}"
        if sub:
            p += f"/{sub}"
        return p

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> Reply:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = dict(headers or {})
        if data is not None:
            h.setdefault("Content-Type", content_type)
        async with self.session.request(method, self.base + path, data=data, params=params, headers=h) as r:
            text = await r.read()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = text.decode(errors="replace")
            return Reply(r.status, parsed, dict(r.headers))

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("POST", path, body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("PUT", path, body, **kw)

    async def patch(self, path: str, body: Any, kind: str = "merge", **kw: Any) -> Reply:
        ct = {"merge": "application/merge-patch+json", "json": "application/json-patch+json"}.get(kind, kind)
        return await self.request("PATCH", path, body, content_type=ct, **kw)

    async def delete(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("DELETE", path, body, **kw)

    async def give_address(self, na_path: str, ip: str, vni: int, **status: Any) -> Reply:
        """Do by hand what IPAM does: take `ip` in `vni` for the attachment at `na_path` (its IPLock, controlled
        by it), then show it in its status together with `status`; the status write's reply."""
        na = await self.get(na_path)
        assert na.status == 200, na.body
        base, _, _name = na_path.rpartition("/")
        a, b, c, d = ip.split(".")
        lock = await self.post(base.rsplit("/", 1)[0] + "/iplocks",
                               iplock(f"v1-{vni}-{a}-{b}-{c}-{d}", na.body["spec"]["subnet"], na.body))  # fmt: skip
        assert lock.status == 201, lock.body
        body = {"status": {"ipv4": ip, "addressVNI": vni, "lockUID": lock.body["metadata"]["uid"], **status}}
        return await self.patch(na_path + "/status", body)

    async def watch(self, path: str, params: dict[str, str] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yield decoded watch events until the server ends the stream."""
        q = {"watch": "true", **(params or {})}
        async with self.session.get(self.base + path, params=q, timeout=aiohttp.ClientTimeout(total=None)) as r:
            if r.status != 200:
                raise AssertionError(f"watch failed: {r.status} {await r.text()}")
            lines = LineSplitter()
            async for chunk in r.content.iter_any():
                for line in lines.feed(chunk):
                    yield json.loads(line)


def subnet(name: str, vni: int, cidr: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "network.example.com/v1alpha1",
        "kind": "Subnet",
        "metadata": {"name": name, **meta},
        "spec": {"vni": vni, "ipv4": cidr},
    }


def attachment(name: str, node: str, subnet: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "network.example.com/v1alpha1",
        "kind": "NetworkAttachment",
        "metadata": {"name": name, **meta},
        "spec": {"node": node, "subnet": subnet},
    }


def iplock(name: str, subnet: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [{
            "apiVersion": "network.example.com/v1alpha1", "kind": "NetworkAttachment",
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"], "controller": True,
        }]  # fmt: skip
    return {"apiVersion": "network.example.com/v1alpha1", "kind": "IPLock", "metadata": meta,
            "spec": {"subnetName": subnet}}  # fmt: skip
