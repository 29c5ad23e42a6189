"""The listener answers small responses at once: TCP_NODELAY on accepted connections.

Without it a response written in two parts (uvicorn writes the head, then the body)
waits for the client's delayed ACK, about 40 ms a request on Linux: every page and
/status took that long on a keep-alive connection. asyncio sets TCP_NODELAY only on
sockets whose protocol says TCP, so `bind` names it.
"""

from __future__ import annotations

import asyncio
import socket

from chanops.daemon.http import bind


def test_accepted_connections_have_nodelay() -> None:
    async def scenario() -> int:
        sock = bind("127.0.0.1", 0)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted = transport.get_extra_info("socket")
                seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(scenario()) != 0
