"""A TCP proxy that can delay everything it forwards, both ways, in order:
the latency half of a "bad network" where the kernel has no sch_netem.
SIGUSR1 turns a delay of DELAY_MS on, SIGUSR2 off.
Usage: lagproxy.py LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_MS"""

import asyncio
import signal
import sys
import time

delay = 0.0


async def pump(reader, writer, label):
    queue = asyncio.Queue()

    async def release():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.ensure_future(release())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await queue.put((time.monotonic() + delay, data))
    except OSError:
        pass
    await queue.put((0, None))
    try:
        await sender
    except OSError:
        pass


async def handle(client_reader, client_writer, target):
    host, port = target
    try:
        server_reader, server_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 3)
    except (OSError, asyncio.TimeoutError):
        client_writer.close()
        return
    await asyncio.gather(
        pump(client_reader, server_writer, "up"),
        pump(server_reader, client_writer, "down"),
        return_exceptions=True,
    )


async def main():
    global delay
    listen_host, listen_port = sys.argv[1].rsplit(":", 1)
    target_host, target_port = sys.argv[2].rsplit(":", 1)
    amount = int(sys.argv[3]) / 1000
    loop = asyncio.get_running_loop()

    def on():
        global delay
        delay = amount

    def off():
        global delay
        delay = 0.0

    loop.add_signal_handler(signal.SIGUSR1, on)
    loop.add_signal_handler(signal.SIGUSR2, off)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, (target_host, int(target_port))), listen_host, int(listen_port)
    )
    async with server:
        await server.serve_forever()


asyncio.run(main())
