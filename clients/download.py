"""Download a large file with a progress bar, streamed to disk (never whole in memory).

    python clients/download.py [URL] [-o FILE]

The bar is plain: one line on stderr redrawn with a carriage return, percent, size and
speed (a terminal library such as rich would add a dependency for six lines of code).
Without a URL the script serves a 64 MiB file of its own (netkit's HTTP server, static
files from a temporary directory, 127.0.0.1 port 0) and downloads that.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

from netkit.clients import http


def bar(done: int, total: int | None, started: float) -> str:
    speed = done / max(time.monotonic() - started, 1e-6) / (1 << 20)
    if not total:
        return f"\r{done >> 20} MiB  {speed:.0f} MiB/s"
    filled = 30 * done // total
    return (f"\r[{'#' * filled}{'.' * (30 - filled)}] {100 * done // total:3d}%  "
            f"{done >> 20}/{total >> 20} MiB  {speed:.0f} MiB/s")


def download(url: str, target: Path) -> str:
    """Stream `url` into `target`; return the SHA-256 of what was written."""
    digest = hashlib.sha256()
    started = time.monotonic()
    with http.SyncClient(timeout=30) as client, client.stream("GET", url) as r:
        r.raise_for_status()
        total = int(r.headers["Content-Length"]) if "Content-Length" in r.headers else None
        done, drawn = 0, 0.0
        with target.open("wb") as out:
            for chunk in r.iter_bytes():
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if time.monotonic() - drawn > 0.1:  # ten redraws a second are plenty
                    drawn = time.monotonic()
                    sys.stderr.write(bar(done, total, started))
    sys.stderr.write(bar(done, total, started) + "\n")
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("url", nargs="?")
    p.add_argument("-o", "--output", type=Path)
    p.add_argument("--size-mib", type=int, default=64, help="the served file's size")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        target = args.output or Path(tmp) / "download.bin"
        try:
            if args.url:
                print(download(args.url, target))
                return 0
            from netkit.testing import serve_in_thread
            root = Path(tmp) / "www"
            root.mkdir()
            served = root / "big.bin"
            with served.open("wb") as f:
                for i in range(args.size_mib):
                    f.write(hashlib.sha256(b"%d" % i).digest() * (1 << 15))
            with serve_in_thread("http", {"http": {"root": str(root)}}) as server:
                got = download(server.url + "/big.bin", target)
        except http.NetkitError as exc:
            print(f"download: {exc}", file=sys.stderr)
            return 1
        want = hashlib.sha256(served.read_bytes()).hexdigest()
        print(f"{got} {'matches' if got == want else 'DIFFERS FROM'} the served file")
        return 0 if got == want else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
