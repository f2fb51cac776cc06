"""A TCP proxy the tests can cut, to drop a subscriber's connection the way a
network does (no close frame), and refuse reconnects for a while."""

from __future__ import annotations

import asyncio
from typing import Optional, Set


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepting = True
        self.connections = 0  # accepted and forwarded, so far
        self._transports: Set[asyncio.BaseTransport] = set()
        self._server: Optional[asyncio.Server] = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> "Proxy":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        """Aborts every forwarded connection (a TCP reset on both sides)."""
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._transports |= {writer.transport, up_writer.transport}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
            self._transports.discard(writer.transport)
