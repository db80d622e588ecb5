"""After a chaos run: settle, read the store's truth, and judge the records against it, in that order.

The order matters. The end state is polled first (kos.chaos.finalstate), because controllers and agents may
still be writing while the system recovers from the last fault; the store's history is read after that, so
it covers every revision any record or the end-state check saw (kos.chaos.checker requires it); then the
records are checked (pure, no I/O).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

from kos.chaos.checker import Verdict, check
from kos.chaos.finalstate import final_violations
from kos.chaos.history import Record
from kos.chaos.storehistory import read_store_history
from kos.client.rest import ClientConfig
from kos.util.clock import REAL_CLOCK, Clock

__all__ = ["judge"]


async def judge(
    records: Iterable[Record],
    storage: str,
    start: int,
    server: str | ClientConfig,
    *,
    nodes_endpoint: str | None = None,
    nodes_ssl: ssl.SSLContext | None = None,
    settle: float = 60.0,
    clock: Clock = REAL_CLOCK,
) -> Verdict:
    """The verdict on a run whose `records` began at store revision `start` (kos.chaos.storehistory.
    store_revision, read before the run): the end state of the system `server` serves, polled for up to
    `settle` seconds of `clock` (kos.chaos.finalstate.final_violations, with the nodes' fabrics when
    `nodes_endpoint` is given), then the store at `storage` (the apiservers' `--storage` URL) read and the
    records checked against it. Raises what the client and the store raise when neither answers
    (kos.api.errors.StatusError, kos.storage.interface.Unavailable)."""
    final = await final_violations(server, nodes_endpoint=nodes_endpoint, nodes_ssl=nodes_ssl, within=settle,
                                   clock=clock)  # fmt: skip
    store = await read_store_history(storage)
    return check(records, store, start=start, final=final)
