"""A fast SES API v2 stub for benchmarks: answers SendEmail after a fixed latency.

    python bench/sesstub.py --port 8123 --latency 0.05 [--max-rate 200] [--throttle 0.08]

asyncio, one write per answer (no Nagle delay), no parsing of the message itself.
GET /stats returns {"count": n, "times": [arrival unix times of accepted messages],
"throttled": n}; POST /reset clears them. GET /v2/email/account answers GetAccount with
--max-rate. --throttle answers that share of SendEmail calls, at random (seeded), with
429 TooManyRequestsException after the same latency, whatever the rate: throttling that
our rate did not cause.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import time
import uuid

TIMES: list[float] = []
THROTTLED = [0]


def _response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nx-amzn-RequestId: {uuid.uuid4()}\r\n\r\n"
    )
    return head.encode() + body


def _throttled() -> bytes:
    body = b'{"message": "Maximum sending rate exceeded."}'
    head = (
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
        "x-amzn-ErrorType: TooManyRequestsException\r\n"
        f"Content-Length: {len(body)}\r\nx-amzn-RequestId: {uuid.uuid4()}\r\n\r\n"
    )
    return head.encode() + body


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, args) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            arrived = time.time()
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if length:
                await reader.readexactly(length)
            if method == "POST" and path.startswith("/v2/email/outbound-emails"):
                if args.throttle and args.random.random() < args.throttle:
                    THROTTLED[0] += 1
                    await asyncio.sleep(args.latency)
                    writer.write(_throttled())
                    await writer.drain()
                    continue
                TIMES.append(arrived)
                await asyncio.sleep(args.latency)
                body = json.dumps({"MessageId": f"stub-{uuid.uuid4().hex}"}).encode()
                writer.write(_response("200 OK", body))
            elif path.startswith("/v2/email/account"):
                quota = {
                    "Max24HourSend": -1.0,
                    "MaxSendRate": args.max_rate,
                    "SentLast24Hours": float(len(TIMES)),
                }
                body = json.dumps({"SendQuota": quota, "SendingEnabled": True}).encode()
                writer.write(_response("200 OK", body))
            elif path.startswith("/stats"):
                writer.write(
                    _response(
                        "200 OK",
                        json.dumps(
                            {"count": len(TIMES), "times": TIMES, "throttled": THROTTLED[0]}
                        ).encode(),
                    )
                )
            elif path.startswith("/reset"):
                TIMES.clear()
                THROTTLED[0] = 0
                writer.write(_response("200 OK", b"{}"))
            else:
                writer.write(_response("404 Not Found", b'{"message": "not found"}'))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--max-rate", type=float, default=100000.0)
    parser.add_argument("--throttle", type=float, default=0.0, help="share answered 429")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    args.random = random.Random(args.seed)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args), "127.0.0.1", args.port, limit=2**24, backlog=1024
    )
    print(f"listening on {args.port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
