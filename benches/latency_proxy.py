#!/usr/bin/env python3
"""A TCP proxy that makes a local PostgreSQL answer like a remote warehouse.

Each connection gets a round-trip time (half of it each way), a bandwidth cap on what the
server sends, and a think time on every statement that reads (an extended-protocol Bind, or
a simple query other than BEGIN/COMMIT/ROLLBACK/SET): the time a warehouse takes to start
answering. Bytes keep their order; the delays are scheduled, not slept per packet, so a
stream of pages is limited by the cap and not by the round trip.

  latency_proxy.py --listen 127.0.0.1:6543 --upstream 127.0.0.1:5432 \
      --query-latency 0.5 --rtt 0.05 --bandwidth 2000000

Prints "listening on HOST:PORT" once it accepts connections.
"""

import argparse
import asyncio
import time

QUIET = (b"BEGIN", b"COMMIT", b"ROLLBACK", b"SET", b"SHOW", b"DISCARD", b"RESET")


def reads(data: bytes) -> bool:
    """Whether a client packet starts a statement that reads: the warehouse thinks first."""
    if not data:
        return False
    if data[:1] == b"B":
        return True
    if data[:1] == b"Q" and len(data) > 5:
        return not data[5:].lstrip().upper().startswith(QUIET)
    return False


async def pump(reader, writer, delay, bandwidth, think, latency):
    """Copies reader to writer, each chunk delivered `delay` after it arrived, after the
    previous chunk, after its share of `bandwidth` (bytes/s, 0 for none), and after `latency`
    more when `think` says the chunk starts a statement."""
    queue: asyncio.Queue = asyncio.Queue()

    async def deliver():
        free_at = 0.0
        while True:
            item = await queue.get()
            if item is None:
                break
            due, data = item
            start = max(due, free_at)
            now = time.monotonic()
            if start > now:
                await asyncio.sleep(start - now)
            writer.write(data)
            await writer.drain()
            free_at = max(start, time.monotonic()) + (len(data) / bandwidth if bandwidth else 0)
        writer.close()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            due = time.monotonic() + delay + (latency if think(data) else 0)
            queue.put_nowait((due, data))
    except ConnectionError:
        pass
    finally:
        queue.put_nowait(None)
        try:
            await sender
        except ConnectionError:
            pass


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--upstream", default="127.0.0.1:5432")
    parser.add_argument("--query-latency", type=float, default=0.5, help="seconds per reading statement")
    parser.add_argument("--rtt", type=float, default=0.05, help="round-trip time, seconds")
    parser.add_argument("--bandwidth", type=float, default=2_000_000, help="bytes/s the server sends per connection; 0 for no cap")
    args = parser.parse_args()
    up_host, up_port = args.upstream.rsplit(":", 1)

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(up_host, int(up_port))
        except OSError:
            client_writer.close()
            return
        half = args.rtt / 2
        await asyncio.gather(
            pump(client_reader, server_writer, half, 0, reads, args.query_latency),
            pump(server_reader, client_writer, half, args.bandwidth, lambda _: False, 0),
        )

    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port))
    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
