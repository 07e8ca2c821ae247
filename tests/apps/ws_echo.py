"""A WebSocket echo server (python3-websockets) for the proxy's tunnel
tests: echoes every message, answers "close:CODE" by closing with CODE,
"slow:N" by sending N MiB as fast as the client takes them, and reports
the client address it saw ("whoami").

    ws_echo.py PORT"""
import asyncio
import sys

import websockets


async def handler(ws, path=None):
    async for msg in ws:
        if isinstance(msg, str) and msg.startswith("close:"):
            await ws.close(code=int(msg[6:]), reason="asked")
            return
        if isinstance(msg, str) and msg.startswith("flood:"):
            for _ in range(int(msg[6:])):
                await ws.send(b"x" * (1 << 20))
            await ws.send("flood done")
            continue
        if msg == "whoami":
            await ws.send(f"{ws.remote_address[0]} {ws.request_headers.get('X-Forwarded-For')}")
            continue
        await ws.send(msg)


async def main(port):
    async with websockets.serve(handler, "127.0.0.1", port, max_size=None, ping_interval=None):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
