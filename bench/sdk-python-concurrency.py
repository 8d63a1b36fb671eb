#!/usr/bin/env python3
"""Concurrency of the Python SDK's async face: N sandboxes' worth of create +
exec + delete, all at once, from one event loop and one den.AsyncClient.

It asserts that no thread pool runs underneath (the process keeps its one
thread throughout, and the loop never made its default executor, which
asyncio.to_thread and getaddrinfo would use), that every exec printed what it
was asked to, and that nothing failed; then it prints p50 and p99 of each
step and of the whole, and the wall time.

    sdk/python/.venv/bin/python bench/sdk-python-concurrency.py [-n 100]

The server is DEN_URL/DEN_API_KEY, else den up's env file (as the SDK finds
it). Give it an IP URL (den up prints one): a host name is resolved through
asyncio's getaddrinfo, which runs on a thread.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import sys
import threading
import time

import den


async def one(client: den.AsyncClient, i: int, image: str, memory_mb: int) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    sb = await client.sandboxes.create(image, memory_mb=memory_mb, timeout=600, metadata={"bench": "sdk-python-concurrency"})
    t1 = time.perf_counter()
    try:
        r = await sb.commands.run(f"echo sandbox-{i}")
        if (r.stdout, r.exit_code) != (f"sandbox-{i}\n", 0):
            raise AssertionError(f"sandbox {i}: exec printed {r.stdout!r}, exit {r.exit_code}")
        t2 = time.perf_counter()
    finally:
        await sb.kill()
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def pct(xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=100, method="inclusive")
    return f"p50 {statistics.median(xs) * 1000:7.1f} ms   p99 {q[98] * 1000:7.1f} ms"


async def main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    load = os.getloadavg()[0]
    threads = threading.active_count()
    assert threads == 1, f"{threads} threads before the run: want 1"
    samples: list[int] = []

    async def watch_threads() -> None:  # samples the thread count during the run
        while True:
            samples.append(threading.active_count())
            await asyncio.sleep(0.01)

    async with den.AsyncClient(http2=args.http2) as client:
        info = await client.info()
        sampler = asyncio.create_task(watch_threads())
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(client, i, args.image, args.memory_mb) for i in range(args.n)), return_exceptions=True)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        sampler.cancel()
        left = [s.id async for s in client.sandboxes.list(metadata={"bench": "sdk-python-concurrency"})]
    errors = [r for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if not isinstance(r, BaseException)]
    print(f"den {info.version} ({info.runtimes[0]}), {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"den-sdk {den.__version__}, {'HTTP/2' if args.http2 else 'HTTP/1.1'}")  # fmt: skip
    print(f"{args.n} x (create {args.image} + exec + delete), all concurrent on one event loop: wall {wall:.2f} s")
    if ok:
        print(f"  create  {pct([r[0] for r in ok])}")
        print(f"  exec    {pct([r[1] for r in ok])}")
        print(f"  delete  {pct([r[2] for r in ok])}")
        print(f"  total   {pct([sum(r) for r in ok])}")
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(f"  client CPU: {cpu:.2f} s for the run ({cpu / max(1, args.n) * 1000:.1f} ms a sandbox); 1-min load average before: {load:.2f}")
    print(f"  threads: max {max(samples, default=1)} during the run ({len(samples)} samples); default executor made: {loop._default_executor is not None}")  # type: ignore[attr-defined]
    for e in errors[:5]:
        print(f"  error: {type(e).__name__}: {e}", file=sys.stderr)
    failed = bool(errors) or left or max(samples, default=1) != 1 or loop._default_executor is not None  # type: ignore[attr-defined]
    if left:
        print(f"  {len(left)} sandboxes left behind: {left[:5]}", file=sys.stderr)
    print(f"  errors: {len(errors)}  ->  {'FAIL' if failed else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=100, help="sandboxes (default 100)")
    p.add_argument("--image", default="busybox")
    p.add_argument("--memory-mb", type=int, default=128, help="memory limit of each sandbox")
    p.add_argument("--http2", action="store_true", help="HTTP/2 with prior knowledge instead of HTTP/1.1")
    sys.exit(asyncio.run(main(p.parse_args())))
