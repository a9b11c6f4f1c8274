"""The cost of netkit's transport layer over a bare asyncio.Protocol.

Both servers answer every request that wrk sends on a keep-alive connection with
the same fixed HTTP response, on uvloop, pinned to core 0; wrk -t1 -c50 runs on
core 1. The "peer" here is the bare protocol: the floor under any server we write.

    python bench/transport.py [--seconds 5] [--rounds 3]
prints  transport-rr ours/peer = RATIO (ours X req/s, peer Y req/s)
and the same per server CPU-second (wrk on one core can saturate before the server).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, cpu_seconds, free_port, report, start, stop, wait_port, wrk

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\n"
            b"Hello world\n")


def serve(kind: str, port: int) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if kind == "bare":
            class Bare(asyncio.Protocol):
                def connection_made(self, transport):  # type: ignore[no-untyped-def]
                    self.transport = transport

                def data_received(self, data: bytes) -> None:
                    self.transport.write(RESPONSE)

            keep: object = await loop.create_server(Bare, "127.0.0.1", port)
        else:
            sys.path.insert(0, str(ROOT))
            from netkit.config import Address
            from netkit.transport.connection import Handler, Limits
            from netkit.transport.listeners import StreamServer

            class Answer(Handler):
                def data_received(self, data: bytes) -> None:
                    self.conn.write(RESPONSE)

            keep = StreamServer("bench", Answer, limits=Limits())
            await keep.listen([Address("127.0.0.1", port)])
        await asyncio.Event().wait()  # serve until killed
        assert keep

    uvloop.run(main())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", choices=["bare", "netkit"])
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    results: dict[str, list[float]] = {"netkit": [], "bare": []}
    per_cpu: dict[str, list[float]] = {"netkit": [], "bare": []}
    for _ in range(args.rounds):
        for kind in ("netkit", "bare"):  # alternate, so drift hits both alike
            port = free_port()
            proc = start([sys.executable, __file__, "--serve", kind, "--port", str(port)])
            try:
                wait_port(port)
                cpu0 = cpu_seconds(proc.pid)
                rate = wrk(f"http://127.0.0.1:{port}/", seconds=args.seconds)
                cpu = cpu_seconds(proc.pid) - cpu0
                results[kind].append(rate)
                # wrk on one core can be the limit; requests per server CPU-second is not
                per_cpu[kind].append(rate * int(args.seconds) / max(cpu, 1e-3))
            finally:
                stop(proc)
    report("transport-rr", results["netkit"], results["bare"], "req/s")
    report("transport-rr-per-cpu", per_cpu["netkit"], per_cpu["bare"], "req/cpu-s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
