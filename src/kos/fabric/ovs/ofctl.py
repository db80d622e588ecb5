"""Flows through `ovs-ofctl`: one process per batch, atomic, and every error attributed to the call that caused it.

Why `ovs-ofctl --bundle add-flows <switch> -`: a process per flow costs ~10 ms;
one process carrying thousands of flows on stdin costs ~0.01 ms per flow, and
`--bundle` makes the whole batch one OpenFlow transaction: all of it or none
(ovs-datapath.md §3). `add-flows` lines may start with `add`, `delete` or
`delete_strict` and are executed in order (ovs-ofctl(8)), so one bundle carries
the adds and the deletes of many callers. Adding a flow whose table, priority
and match equal an installed flow's replaces it in place — the way repairs are
made without interrupting traffic.

Batching (`FlowBatcher`): every caller submits its lines as one *member* and
awaits its own outcome; members that arrive while a bundle runs form the next
one (`batch.Batcher`). Because a failed bundle changed nothing, its members
can be retried: when ovs-ofctl names the offending line (`-:N:`) that member
fails and the rest are retried together; otherwise the batch is split in
halves until the culprit is alone. A switch that cannot be reached fails every
member at once, with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re

from kos.fabric.flows import Flow
from kos.fabric.interface import FabricError
from kos.fabric.ovs.batch import Batcher

PROTOCOL = "OpenFlow13"
_LINE = re.compile(r"^(?:ovs-ofctl: )?-:(\d+): (.*)$")
_UNREACHABLE = ("connecting to ", "failed to connect", "Connection refused", "Connection reset", "Broken pipe",
                "connection dropped", "End of file")  # fmt: skip


class OfctlError(FabricError):
    """`ovs-ofctl` failed; `line` is the 1-based stdin line it complained about, if it named one."""

    def __init__(self, message: str, *, line: int | None = None, unreachable: bool = False) -> None:
        super().__init__(message)
        self.line = line
        self.unreachable = unreachable


def add_line(flow: Flow) -> str:
    return "add " + flow.add_spec()


def delete_cookie_line(cookie: int) -> str:
    """Every flow of one interface, in every table."""
    return f"delete cookie={cookie:#x}/-1"


def delete_strict_line(cookie: int, table: int, priority: int, match: str) -> str:
    """Exactly one flow (table, priority, match), and only if it carries `cookie`."""
    return f"delete_strict cookie={cookie:#x}/-1,table={table},priority={priority}{',' + match if match else ''}"


def parse_error(stderr: str) -> OfctlError:
    text = stderr.strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        m = _LINE.match(ln.strip())
        if m:
            return OfctlError(m.group(2), line=int(m.group(1)))
    refused = [ln.strip().removeprefix("Error ") for ln in lines if ln.startswith("Error OFP")]
    if refused:  # the switch refused a flow mod: that line names it (the bundle's own failure follows)
        return OfctlError(f"the switch refused {refused[0]}")
    msg = lines[-1] if lines else "ovs-ofctl failed without a message"
    msg = msg.removeprefix("ovs-ofctl: ")
    return OfctlError(msg, unreachable=any(u in text for u in _UNREACHABLE))


@dataclasses.dataclass(slots=True)
class Ofctl:
    """`ovs-ofctl` against one bridge's management socket (`unix:<rundir>/<bridge>.mgmt`)."""

    target: str
    program: str = "ovs-ofctl"
    timeout: float = 60.0
    processes: int = 0

    async def _run(self, args: list[str], stdin: bytes | None = None) -> str:
        argv = [self.program, "-O", PROTOCOL, *args]
        self.processes += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as e:
            raise OfctlError(f"cannot run {self.program}: {e.strerror or e}", unreachable=True) from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise OfctlError(f"{self.program} {' '.join(args[:2])} took over {self.timeout:g}s; is ovs-vswitchd "
                             f"stuck?", unreachable=True) from None  # fmt: skip
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            error = parse_error(err.decode(errors="replace"))
            if error.unreachable:
                error.args = (f"cannot reach bridge at {self.target}: {error}",)
            raise error
        return out.decode(errors="replace")

    async def bundle(self, lines: list[str]) -> None:
        """Apply flow mods (`add …`, `delete …`, `delete_strict …`) as one atomic bundle."""
        if lines:
            # --no-names: port numbers as given; without it ovs-ofctl first asks the switch for its port names,
            # which costs ~8 of the ~12 ms a small bundle takes (measured in docs/ovs.md)
            await self._run(
                ["--bundle", "--no-names", "add-flows", self.target, "-"], ("\n".join(lines) + "\n").encode()
            )

    async def dump_flows(self) -> str:
        return await self._run(["--no-stats", "--no-names", "dump-flows", self.target])


class FlowBatcher:
    """Concurrent callers' flow mods, coalesced into bundles; each caller learns its own outcome."""

    def __init__(self, ofctl: Ofctl) -> None:
        self.ofctl = ofctl
        self._batcher: Batcher[list[str], None] = Batcher(self._run, name="flows")

    @property
    def batches(self) -> int:
        return self._batcher.batches

    async def apply(self, lines: list[str]) -> None:
        if lines:
            await self._batcher.submit(lines)

    async def close(self) -> None:
        await self._batcher.close()

    async def _run(self, members: list[list[str]]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(members)
        await self._attempt(list(range(len(members))), members, outcomes)
        return outcomes

    async def _attempt(self, idx: list[int], members: list[list[str]], outcomes: list[BaseException | None]) -> None:
        try:
            await self.ofctl.bundle([ln for i in idx for ln in members[i]])
            return
        except OfctlError as e:
            err = e
        if err.unreachable or len(idx) == 1:
            for i in idx:
                outcomes[i] = _for_member(err, members[i], None)
            return
        if err.line is not None:
            start = 0
            for i in idx:
                n = len(members[i])
                if start < err.line <= start + n:
                    outcomes[i] = _for_member(err, members[i], err.line - start)
                    rest = [j for j in idx if j != i]
                    if rest:
                        await self._attempt(rest, members, outcomes)
                    return
                start += n
        half = len(idx) // 2
        await self._attempt(idx[:half], members, outcomes)
        await self._attempt(idx[half:], members, outcomes)


def _for_member(err: OfctlError, lines: list[str], line: int | None) -> OfctlError:
    """The batch's error as this member's own (its line, not the batch's)."""
    if err.unreachable:
        return OfctlError(str(err), unreachable=True)
    if line is None and err.line is not None and len(lines) >= 1:
        line = err.line if err.line <= len(lines) else None
    if line is not None and 1 <= line <= len(lines):
        return OfctlError(f"ovs-ofctl rejected flow {lines[line - 1]!r}: {err}", line=line)
    return OfctlError(f"ovs-ofctl rejected flows {lines!r}: {err}")
