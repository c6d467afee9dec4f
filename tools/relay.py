"""A TCP relay: test hosts in network namespaces reach the machine's loopback services through it.

    python -m tools.relay 10.251.0.1 5672=127.0.0.1:5672 5432=127.0.0.1:5432

It listens on the given address (the test hosts' bridge) and pipes each
connection to its target. It is what a host's network sees in place of
RabbitMQ or PostgreSQL: when a host is cut off, the relay's side stays up and
the broker notices the silence by its heartbeats, as it would across a real
network. It changes nothing on the machine; it stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        # One side ended: end the other, as a connection through a router would.
        with contextlib.suppress(OSError):
            writer.close()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: tuple[str, int]) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(*target)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


async def serve(address: str, routes: dict[int, tuple[str, int]]) -> None:
    """Listen on `address` at each route's port and relay to its target until SIGTERM or SIGINT."""
    servers = [await asyncio.start_server(lambda r, w, t=target: _relay(r, w, t), address, port)
               for port, target in routes.items()]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"relay on {address}: " + ", ".join(f"{p} -> {h}:{t}" for p, (h, t) in routes.items()), flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def parse_routes(specs: list[str]) -> dict[int, tuple[str, int]]:
    """"5672=127.0.0.1:5672" -> {5672: ("127.0.0.1", 5672)}."""
    routes = {}
    for spec in specs:
        port, _, target = spec.partition("=")
        host, _, target_port = target.rpartition(":")
        routes[int(port)] = (host, int(target_port))
    return routes


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], parse_routes(sys.argv[2:])))
