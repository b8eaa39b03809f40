#!/usr/bin/env python3
"""CPython's pymalloc as a peer of the allocator harness (`bench-alloc`).

    peer_cpython.py fragmentation --pattern random|prefix|keep47 --n N
    peer_cpython.py churn --n N

The same workloads as the `peer-*` binaries, on Python objects: fragmentation allocates N
`str` objects of 57 to 88 bytes (`sys.getsizeof`; the sizes of short strings), then drops
a random half, the first half or all but 47 spread evenly; churn allocates N `bytes`
objects of 64 bytes, drops them all and allocates N again. The same splitmix64 choices as
the Rust peers. Prints one JSON object with the harness's keys (RSS from /proc/self/status,
series of about 100 RSS samples per phase).
"""
import gc
import json
import sys
import time

MASK = (1 << 64) - 1


class Rng:
    """splitmix64, as crates/eterna-bench/src/rng.rs."""

    def __init__(self, seed):
        self.s = seed

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return self.next() % n


def status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


class Series:
    def __init__(self, ops, base):
        self.every, self.base, self.op, self.points = max(ops // 100, 1), base, 0, [[0, 0]]

    def tick(self):
        self.op += 1
        if self.op % self.every == 0:
            self.points.append([self.op, max(status_kib("VmRSS:") - self.base, 0)])


def pct(before, after):
    return 100.0 * max(before - after, 0) / before if before > 0 else 0.0


def fragmentation(pattern, n):
    rng = Rng(1)
    lens = [8 + rng.below(32) for _ in range(n)]  # str of 8..39 ASCII chars: 57..88 bytes
    blocks = [None] * n
    gc.disable()
    base = status_kib("VmRSS:")
    series = Series(2 * n, base)
    t = time.perf_counter()
    for i in range(n):
        blocks[i] = ("%d" % i).rjust(lens[i], "x")
        series.tick()
    alloc_s = time.perf_counter() - t
    full = status_kib("VmRSS:") - base
    keep_rng = Rng(2)
    step = max(n // 47, 1)
    kept = 0
    t = time.perf_counter()
    for i in range(n):
        if pattern == "random":
            keep = keep_rng.below(2) == 0
        elif pattern == "prefix":
            keep = i >= n // 2
        else:
            keep = i % step == 0 and i // step < 47
        if keep:
            kept += 1
        else:
            blocks[i] = None
        series.tick()
    free_s = time.perf_counter() - t
    after = status_kib("VmRSS:") - base
    return {
        "workload": "fragmentation", "allocator": "CPython (pymalloc)", "pattern": pattern, "n": n,
        "kept": kept, "rss_full_kib": full, "rss_after_kib": after, "rss_returned_pct": pct(full, after),
        "alloc_seconds": alloc_s, "free_seconds": free_s, "peak_rss_kib": status_kib("VmHWM:") - base,
        "ops_per_sec": (n + n - kept) / (alloc_s + free_s), "series": series.points,
    }


def churn(n):
    blocks = [None] * n
    gc.disable()
    base = status_kib("VmRSS:")
    series = Series(3 * n, base)

    def fill():
        t = time.perf_counter()
        for i in range(n):
            blocks[i] = b"%031d" % i  # a 64-byte bytes object
            series.tick()
        return time.perf_counter() - t

    a1 = fill()
    full = status_kib("VmRSS:") - base
    t = time.perf_counter()
    for i in range(n):
        blocks[i] = None
        series.tick()
    fr = time.perf_counter() - t
    freed = status_kib("VmRSS:") - base
    a2 = fill()
    again = status_kib("VmRSS:") - base
    total = a1 + fr + a2
    return {
        "workload": "churn", "allocator": "CPython (pymalloc)", "n": n, "record_bytes": 64,
        "alloc1_seconds": a1, "free_seconds": fr, "alloc2_seconds": a2, "total_seconds": total,
        "ops_per_sec": 3 * n / total, "rss_full_kib": full, "rss_after_kib": freed, "rss_again_kib": again,
        "rss_returned_pct": pct(full, freed), "peak_rss_kib": status_kib("VmHWM:") - base, "series": series.points,
    }


def main():
    args = sys.argv[1:]
    if not args or args[0] not in ("fragmentation", "churn"):
        sys.exit(__doc__)
    opts = dict(zip(args[1::2], args[2::2]))
    n = int(opts.get("--n", "1000000"))
    if args[0] == "fragmentation":
        r = fragmentation(opts.get("--pattern", "random"), n)
    else:
        r = churn(n)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
