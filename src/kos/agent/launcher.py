"""Launching an NA's post-create and post-delete commands without blocking the agent's workers.

What a command may be and how it runs is `execs.py`'s; this is the agent's
side: the allow-list check (its failure is reported in the NA's status as a
host error), one task per command (cancelled when the agent stops), the
`kos_agent_attachment_exec_*` metrics, and handing a post-create report back
so it can be written into the NA's status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kos.agent import execs
from kos.agent.metrics import BoundMetrics
from kos.api.types import ExecReport, NetworkAttachment
from kos.fabric.interface import LocalNetIfc
from kos.util.log import get_logger

log = get_logger(__name__)

OnReport = Callable[[ExecReport], None]
"""Called with a finished command's report (on the event loop)."""


class ExecLauncher:
    """Runs allow-listed commands for one node's interfaces, each in its own task."""

    def __init__(self, node: str, allowed_programs: frozenset[str], metrics: BoundMetrics) -> None:
        self.node = node
        self.allowed_programs = allowed_programs
        self.m = metrics
        self._tasks: set[asyncio.Task[None]] = set()

    def errors(self, att: NetworkAttachment) -> list[str]:
        """The host errors of `att`'s post-create command: one when argv[0] is not allowed, else none."""
        argv = att.spec.post_create_exec
        if argv and argv[0] not in self.allowed_programs:
            return [execs.not_allowed("postCreate", argv)]
        return []

    def launch(self, what: str, argv: tuple[str, ...], ifc: LocalNetIfc, on_report: OnReport | None) -> None:
        """Start `argv` ("postCreate" or "postDelete" as `what`) expanded for `ifc`; nothing if empty or not
        allowed (logged). `on_report` gets the report when the command ends."""
        if not argv:
            return
        if argv[0] not in self.allowed_programs:
            log.warning("command not allowed", node=self.node, what=what, program=argv[0])
            return
        cmd = execs.expand(argv, ifname=ifc.name, ipv4=ifc.guest_ip, mac=ifc.guest_mac)
        task = asyncio.create_task(self._run(what, cmd, on_report))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, what: str, cmd: list[str], on_report: OnReport | None) -> None:
        report, seconds = await execs.run(cmd)
        lg = str(execs.lg_complaints(report.std_out, report.std_err))
        labels = (self.m.node, what, str(report.exit_status), lg)
        self.m.exec_duration.labels(*labels).observe(seconds)
        self.m.exec_count.labels(*labels).inc()
        log.info("command exited", node=self.node, what=what, command=cmd, exit_status=report.exit_status)
        if on_report is not None:
            on_report(report)

    def stop(self) -> None:
        """Cancel the commands still running."""
        for t in list(self._tasks):
            t.cancel()
