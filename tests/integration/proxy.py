"""A TCP proxy in front of PostgreSQL that a test can cut, to play a network partition."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs, urlsplit, urlunsplit


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to the server; ``cut()`` drops every connection and refuses
    new ones until ``heal()``.

    ``hold_close``: when the server closes a connection, pass on what it sent at once but
    close the client's side only this many seconds later. That is how a fast restart or
    ``pg_terminate_backend`` looks to a client whose event loop is slow to see the close: the
    server's FATAL has arrived, the end of the connection has not.
    """

    def __init__(self, database_url: str, *, hold_close: float = 0.0) -> None:
        self._hold_close = hold_close
        parts = urlsplit(database_url)
        socket_dir = parse_qs(parts.query).get("host", [None])[0]
        self._unix = f"{socket_dir}/.s.PGSQL.{parts.port or 5432}" if socket_dir else None
        self._tcp = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._database_url = database_url
        self._open: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.cut_off = False

    async def start(self) -> str:
        """Start listening; return the database URL that goes through the proxy."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        parts = urlsplit(self._database_url)
        user = parts.username or "postgres"
        return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{port}", query=""))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        if self.cut_off:
            writer.close()
            return
        if self._unix:
            up_reader, up_writer = await asyncio.open_unix_connection(self._unix)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self._tcp)
        self._open |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer, hold=self._hold_close)
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: float = 0.0
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if self.cut_off:
                    break
                writer.write(data)
                await writer.drain()
        if hold and not self.cut_off:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), hold)
        writer.close()
        self._open.discard(writer)

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def heal(self) -> None:
        self.cut_off = False

    async def close(self) -> None:
        self._closing.set()
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.gather(*self._handlers, return_exceptions=True)
