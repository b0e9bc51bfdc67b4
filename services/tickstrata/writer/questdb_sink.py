"""The writer's QuestDB edge: DDL and health over REST `/exec` and `/ping`, rows over ILP/HTTP.

Rows go as one DataFrame per table (`Sender.dataframe`: the client serializes whole columns in C, without a
Python call per row). One ILP/HTTP flush per table: QuestDB commits a request as one transaction only when it
holds a single table's rows, so a failure never leaves half a batch acknowledged as a whole. A flush answering
200 means the rows are committed to the WAL, not yet applied; a table whose WAL apply failed is *suspended* and
would hide every later row, so the writer checks `wal_tables()` before acknowledging (the rows stay pending
until an operator resumes it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from questdb import Sender

from tickstrata.common.questdb_rest import QuestDBError, QuestDBRest, ilp_conf
from tickstrata.common.questdb_schema import TIMESTAMP_COLUMN, create_table_statements
from tickstrata.writer.frames import TableFrame

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TableWrite:
    """One table's transaction as it happened: the write span of every traced entry in it uses these times."""

    table: str
    rows: int
    start_ns: int
    end_ns: int
    """Wall-clock nanoseconds (what span timestamps are)."""


class IlpWriter:
    """Writes table frames with one long-lived sync `Sender`; call `write` from a worker thread only."""

    def __init__(self, http_url: str) -> None:
        self._conf = ilp_conf(http_url)
        self._sender: Any = None

    def write(self, frames: Sequence[TableFrame]) -> list[TableWrite]:
        """Send and flush each table's frame as its own transaction; raise on any failure."""
        writes: list[TableWrite] = []
        try:
            if self._sender is None:
                sender: Any = Sender.from_conf(self._conf)
                sender.establish()
                self._sender = sender
            for frame in frames:
                start_ns = time.time_ns()
                self._sender.dataframe(
                    frame.frame, table_name=frame.table, symbols=list(frame.symbols), at=TIMESTAMP_COLUMN
                )
                self._sender.flush(transactional=True)
                writes.append(TableWrite(frame.table, len(frame), start_ns, time.time_ns()))
        except Exception:
            # A failed flush clears the buffer; a fresh sender also drops a connection left in a bad state.
            self.close()
            raise
        return writes

    def close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                sender.close(flush=False)
            except Exception:  # closing a broken connection must not mask the original error
                logger.debug("closing the ILP sender failed", exc_info=True)


class QuestDBSink:
    """What the consumer writes through: each table's ILP transaction, then the check that no table is suspended."""

    def __init__(self, http_url: str) -> None:
        self.ilp = IlpWriter(http_url)
        self.rest = QuestDBRest(http_url)

    async def create_tables(self) -> None:
        await self.rest.create_tables(create_table_statements())

    async def write(self, frames: Sequence[TableFrame]) -> Sequence[TableWrite]:
        """Write `frames`; raise unless QuestDB has every row and every table written is healthy."""
        writes = await asyncio.to_thread(self.ilp.write, frames)
        suspended = await self.rest.suspended_tables([frame.table for frame in frames])
        if suspended:
            # The rows are in the WAL but will not become visible: do not acknowledge; an operator resumes it.
            logger.error("QuestDB tables are WAL-suspended", extra={"tables": suspended})
            raise QuestDBError(f"WAL-suspended tables: {', '.join(suspended)} (ALTER TABLE ... RESUME WAL)")
        return writes

    async def close(self) -> None:
        await asyncio.to_thread(self.ilp.close)
        await self.rest.close()
