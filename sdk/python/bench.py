#!/usr/bin/env python3
"""Measure the SDK against a live daemon: list_islands() requests/s over the Unix socket and
TCP (with a few islands present), and the attach round trip (a keystroke until its echo).

    DEJIMA_HOME=... python3 sdk/python/bench.py --tcp 127.0.0.1:7411 [--calls 500] [--islands 3]

Islands it makes are named pysdk-bench-* and purged at the end.
"""

import argparse
import os
import secrets
import statistics
import string
import time
from typing import List

import dejima


def rate(client: dejima.Client, calls: int) -> float:
    client.list_islands()  # warm the connection
    t0 = time.perf_counter()
    for _ in range(calls):
        client.list_islands()
    return calls / (time.perf_counter() - t0)


def round_trips(client: dejima.Client, island: str, n: int) -> List[float]:
    """One keystroke until its echo comes back (through tmux and the shell's line editor)."""
    out: List[float] = []
    with client.attach(island, label="bench") as s:
        s.send("echo ready-$((1+1))\r")
        s.read_until("ready-2", 15)
        for i in range(n):
            ch = string.ascii_lowercase[i % 26]
            t0 = time.perf_counter()
            s.send(ch)
            s.read_until(ch, 10)
            out.append(time.perf_counter() - t0)
        s.send("\x15echo clear-$((1+1))\r")  # ^U: clear the typed line
        s.read_until("clear-2", 15)
    return out


def command_round_trips(client: dejima.Client, island: str, n: int) -> List[float]:
    """A whole command line until the shell has run it: `echo Z<k>$((1+1))` -> `Z<k>2`."""
    out: List[float] = []
    with client.attach(island, label="bench-cmd") as s:
        for i in range(n):
            k = f"{i:03d}"
            t0 = time.perf_counter()
            s.send(f"echo Z{k}$((1+1))\r")
            s.read_until(f"Z{k}2", 10)
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", default=os.path.join(os.environ.get("DEJIMA_HOME") or os.path.expanduser("~/.dejima"), "dejimad.sock"))
    ap.add_argument("--tcp", default=os.environ.get("DEJIMA_TEST_TCP"))
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--islands", type=int, default=3)
    ap.add_argument("--round-trips", type=int, default=20)
    a = ap.parse_args()

    unix = dejima.Client(socket=a.socket)
    run = "pysdk-bench-" + secrets.token_hex(2)
    names = [f"{run}-{i}" for i in range(a.islands)]
    try:
        for n in names:
            unix.create_island(name=n, no_repo=True, agent="custom", cmd="bash")
        print(f"islands present: {len(unix.list_islands())}")
        print(f"unix  list_islands: {rate(unix, a.calls):8.0f} req/s ({a.calls} calls)")
        if a.tcp:
            tcp = dejima.Client(host=a.tcp)
            print(f"tcp   list_islands: {rate(tcp, a.calls):8.0f} req/s ({a.calls} calls)")
        for label, c in (("unix", unix), ("tcp", dejima.Client(host=a.tcp) if a.tcp else None)):
            if c is None:
                continue
            for what, fn in (("keystroke echo", round_trips), ("command line", command_round_trips)):
                rt = fn(c, names[0], a.round_trips)
                print(
                    f"{label:5} attach {what}: median {statistics.median(rt) * 1000:.2f} ms, "
                    f"min {min(rt) * 1000:.2f}, max {max(rt) * 1000:.2f} (n={len(rt)})"
                )
    finally:
        for n in names:
            try:
                unix.purge_island(n, force=True)
            except dejima.DejimaError:
                pass


if __name__ == "__main__":
    main()
