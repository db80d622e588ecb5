"""`kos up` as a process for system tests: started, read up to its "up" line, stopped with Ctrl-C.

Several system tests (the demo and `kos up` itself, chaos, monitoring) run a whole local cluster this way; one
helper keeps how they start it, wait for it and stop it the same.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from kos.cli.up import UP_LINE
from kos.util.ports import free_port

__all__ = ["UpProcess"]


class UpProcess:
    """`python -m kos up --state-dir STATE --listen 127.0.0.1:PORT *extra` running until `stop()` (a free port
    unless `port` is given; add `--nodes N` in `extra`). Its output is read up to the line that says it is up
    (`lines`); AssertionError, with that output, if it exits first."""

    def __init__(self, state: Path, *extra: str, port: int | None = None) -> None:
        self.state = state
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kos", "up", "--state-dir", str(state), "--listen", f"127.0.0.1:{self.port}",
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if UP_LINE in line:
                return
        self.stop(check=False)
        raise AssertionError("kos up did not come up:\n" + "".join(self.lines))

    def stop(self, *, check: bool = True, timeout: float = 60.0) -> None:
        """Ctrl-C (SIGINT) and wait; with `check`, assert it exited 0. Killed if it outlives `timeout` s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                rc = self.proc.wait(timeout)
                assert rc == 0 or not check, f"kos up exited {rc}"
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
