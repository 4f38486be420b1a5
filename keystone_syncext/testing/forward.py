"""A TCP forwarder for the tests that put an agent in a network namespace
of its own (doc/testing.md, "Several agents and fencing").

``python -m keystone_syncext.testing.forward LISTEN PORT=HOST[:PORT]...``
listens on ``LISTEN:PORT`` for each route and copies bytes both ways to
``HOST:PORT`` (the same port unless given). Run once inside the
namespace (listening on its 127.0.0.1, towards the root side of a veth)
and once in the root namespace (listening on the veth's address, towards
127.0.0.1), it lets a process in the namespace reach services that listen
on the root namespace's 127.0.0.1 at the same addresses, over the veth
links: cutting a link (``ip link set ... down``) is then a real network
partition for what goes over it. Prints ``ready`` once every port
listens.
"""

import asyncio
import sys


async def _pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError):
            pass


def _handler(host, port):
    async def handle(reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer),
                             _pipe(up_reader, writer))
    return handle


async def main(listen, routes):
    servers = []
    for route in routes:
        port, _, target = route.partition('=')
        host, _, tport = target.partition(':')
        servers.append(await asyncio.start_server(
            _handler(host, int(tport or port)), listen, int(port)))
    print('ready', flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
