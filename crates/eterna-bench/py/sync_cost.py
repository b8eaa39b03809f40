"""Probes of this machine's disk behind two design choices (no eterna needed):

    python3 sync_cost.py [--dir DIR] [--mib 100] [--rounds 150]

1. What `fdatasync` costs per page dirtied through a shared mapping: a file of --mib MiB
   is reserved (posix_fallocate), faulted in page by page with MADV_RANDOM (so the page
   cache holds 4 KiB folios, as eterna's mapping does), synced; then, for k pages, k
   random pages are dirtied through the mapping and the file is synced, --rounds times;
   the median sync time is printed per k. The figures behind "about 90 us plus 11 us per
   scattered page" in BENCHMARKS.md ("what a synced commit costs here").
2. How the size of the writes that first fill a file changes what later mapped stores
   write back: the file is filled by `pwrite` in chunks of 4 KiB, 16 KiB and the whole
   file, then 20 random pages are dirtied through a mapping and synced, 20 times; the
   block device's write requests and KiB per sync are printed (Linux /sys/dev/block
   counters, which also count other processes' writes). On Linux 6.18 ext4 keeps page-
   cache folios as large as the writes that made them, and a mapped store dirties a whole
   folio: the reason eterna faults fresh pools in rather than writing zeros over them
   (docs/design.md, "Allocate small").
"""
import argparse
import mmap
import os
import random
import statistics
import tempfile
import time

from py_ops import disk_writes  # this directory's py-ops harness

PAGE = 4096


def sync_per_page(path, size, rounds):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        os.posix_fallocate(fd, 0, size)
        with mmap.mmap(fd, size) as m:
            m.madvise(mmap.MADV_RANDOM)
            for off in range(0, size, PAGE):
                m[off] = 1
            os.fdatasync(fd)
            pages = size // PAGE
            for k in (1, 2, 4, 8, 12, 16, 20):
                times = []
                for _ in range(rounds):
                    for _ in range(k):
                        off = random.randrange(pages) * PAGE
                        m[off] = (m[off] + 1) & 255
                    t = time.perf_counter()
                    os.fdatasync(fd)
                    times.append(time.perf_counter() - t)
                print(f"{k:3d} scattered pages dirtied through the mapping: median fdatasync "
                      f"{statistics.median(times) * 1e6:5.0f} us")
    finally:
        os.close(fd)
        os.unlink(path)


def folio_amplification(path, size, chunk):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        os.posix_fallocate(fd, 0, size)
        block = b"\1" * chunk
        for off in range(0, size, chunk):
            os.pwrite(fd, block, off)
        os.fdatasync(fd)
        with mmap.mmap(fd, size) as m:
            before = disk_writes(path)
            for _ in range(20):
                for _ in range(20):
                    m[random.randrange(size // PAGE) * PAGE] = 3
                os.fdatasync(fd)
            after = disk_writes(path)
        if before is None or after is None:
            print(f"filled by pwrite of {chunk >> 10} KiB: no device counters here")
            return
        print(f"filled by pwrite of {chunk >> 10:6d} KiB, then 20 pages dirtied through the mapping: "
              f"{(after[0] - before[0]) / 20:5.1f} write requests, {(after[1] - before[1]) / 2 / 20:8.0f} KiB "
              "per sync")
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="where the scratch file goes (default: the temp dir)")
    ap.add_argument("--mib", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=150)
    a = ap.parse_args()
    size = a.mib << 20
    d = tempfile.mkdtemp(prefix="sync-cost-", dir=a.dir)
    try:
        path = os.path.join(d, "scratch")
        sync_per_page(path, size, a.rounds)
        for chunk in (PAGE, 16 * 1024, size):
            folio_amplification(path, size, chunk)
    finally:
        os.rmdir(d)


if __name__ == "__main__":
    main()
