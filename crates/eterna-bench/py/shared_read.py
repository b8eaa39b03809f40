"""The Python side of the `shared-read` benchmark (driven by `bench-shared`).

    python3 shared_read.py STORE --n N --readers 1,2,4,8 --dir DIR [--sample S] [--seed X]
    python3 shared_read.py versions

STORE is one of
  fork          the parent builds a dict of N str->str entries and forks readers that each
                iterate all items, reading every key and value (len(k) + len(v))
  fork-freeze   the same with gc.freeze() before forking
  manager-items multiprocessing.Manager().dict() holds the entries in its server process;
                each reader calls .items() once, which copies every entry into the reader,
                then iterates the copy (and keeps it while measured)
  manager-get   the same server; each reader reads a random sample of S keys, one
                proxy round trip (d[k]) per key
  lmdb          the parent builds an LMDB environment in DIR with py-lmdb and closes it;
                forked readers each open it read-only and iterate all entries with a
                cursor in one read transaction (keeping the transaction open while measured)

Each round forks R readers (R from --readers); when every reader of the round has read,
the parent reads /proc/PID/smaps_rollup of every reader and of the process that holds the
data (the fork parent, the Manager server), then lets the readers exit. Prints one JSON
line; on failure a JSON line with "error" and exit status 3.
"""
import gc
import json
import os
import random
import sys
import time

FIELDS = ("Rss", "Pss", "Private_Dirty", "Private_Clean", "Shared_Dirty", "Shared_Clean", "Anonymous")


def rollup(pid="self"):
    d = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                d[parts[0].rstrip(":")] = int(parts[1])
    return {k: d.get(k, 0) for k in FIELDS}


def key(i):
    return f"key:{i:010d}"


def value(i):
    return f"value number {i} {'v' * 12}"


def build_dict(n):
    return {key(i): value(i) for i in range(n)}


def fail(store, msg):
    print(json.dumps({"store": store, "error": msg}), flush=True)
    sys.exit(3)


def read_line(fd):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf


def run_round(readers, child_fn, holders, spawn=None):
    """Forks `readers` children running child_fn() -> (total, entries); waits until all
    have read, measures them and the holders [(role, pid)], releases them."""
    kids = []  # (pid, done_r, go_w, process or None)
    for _ in range(readers):
        done_r, done_w = os.pipe()
        go_r, go_w = os.pipe()
        others = [fd for k in kids for fd in (k[1], k[2])]

        def body(done_w=done_w, go_r=go_r, others=others, done_r=done_r, go_w=go_w):
            os.close(done_r)
            os.close(go_w)
            for fd in others:
                os.close(fd)
            try:
                t = time.perf_counter()
                total, entries = child_fn()
                el = time.perf_counter() - t
                gc.collect()
                msg = {"total": total, "entries": entries, "read_s": el}
            except BaseException as e:  # reported to the parent, which fails the run
                msg = {"error": f"{type(e).__name__}: {e}"}
            os.write(done_w, (json.dumps(msg) + "\n").encode())
            os.read(go_r, 1)  # hold everything mapped and referenced until measured

        if spawn is None:
            pid = os.fork()
            if pid == 0:
                body()
                os._exit(0)
            proc = None
        else:
            proc = spawn(body)
            pid = proc.pid
        os.close(done_w)
        os.close(go_r)
        kids.append((pid, done_r, go_w, proc))
    results = []
    for pid, done_r, _, _ in kids:
        line = read_line(done_r)
        results.append(json.loads(line) if line else {"error": f"reader {pid} died"})
    mem = [rollup(pid) for pid, _, _, _ in kids]
    held = [dict(rollup(pid), role=role) for role, pid in holders]
    for pid, done_r, go_w, proc in kids:
        os.write(go_w, b"x")
        os.close(go_w)
        os.close(done_r)
        if proc is None:
            os.waitpid(pid, 0)
        else:
            proc.join()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError("; ".join(errors))
    per = [dict(m, pid=k[0], read_s=r["read_s"], total=r["total"], entries=r["entries"])
           for m, k, r in zip(mem, kids, results)]
    return {"readers": readers, "per_reader": per, "holders": held}


def expected_total(n):
    return sum(len(key(i)) + len(value(i)) for i in range(n))


def main():
    args = sys.argv[1:]
    if args and args[0] == "versions":
        out = {"python": sys.version.split()[0]}
        try:
            import lmdb
            out["lmdb"] = f"py-lmdb {lmdb.__version__} (LMDB {'.'.join(map(str, lmdb.version()))})"
        except Exception as e:
            out["lmdb"] = None
            out["lmdb_error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(out))
        return
    store = args[0] if args else "?"
    opts = {"--n": "1000000", "--readers": "1,2,4,8", "--dir": "/tmp", "--sample": "20000", "--seed": "1"}
    it = iter(args[1:])
    for a in it:
        if a not in opts:
            fail(store, f"unexpected argument {a!r}")
        opts[a] = next(it)
    n = int(opts["--n"])
    rounds_of = [int(x) for x in opts["--readers"].split(",")]
    sample = min(int(opts["--sample"]), n)
    out = {"store": store, "n": n, "python": sys.version.split()[0]}
    base = rollup()
    t = time.perf_counter()

    if store in ("fork", "fork-freeze"):
        data = build_dict(n)
        if store == "fork-freeze":
            gc.freeze()
        out["build_s"] = time.perf_counter() - t
        parent = rollup()
        out["data_kib"] = parent["Rss"] - base["Rss"]
        out["parent_rss_kib"] = parent["Rss"]
        out["parent_before_kib"] = base["Rss"]

        def child():
            total = 0
            for k, v in data.items():
                total += len(k) + len(v)
            return total, len(data)

        holders = [("fork parent", os.getpid())]
        out["expected_total"] = expected_total(n)
        out["rounds"] = [run_round(r, child, holders) for r in rounds_of]

    elif store in ("manager-items", "manager-get"):
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        mgr = ctx.Manager()  # started before the data exists, so it shares none of it
        server = mgr._process.pid
        server_base = rollup(server)
        data = build_dict(n)
        proxy = mgr.dict(data)  # pickled once and rebuilt in the server
        del data
        gc.collect()
        out["build_s"] = time.perf_counter() - t
        server_after = rollup(server)
        out["data_kib"] = server_after["Rss"] - server_base["Rss"]
        out["server_rss_kib"] = server_after["Rss"]
        out["sample"] = sample if store == "manager-get" else n
        held = []  # keeps each reader's copy referenced until it is measured

        if store == "manager-items":
            def child():
                items = proxy.items()  # one round trip; the whole dict is copied in
                held.append(items)
                total = 0
                for k, v in items:
                    total += len(k) + len(v)
                return total, len(items)
            out["expected_total"] = expected_total(n)
        else:
            def child():
                rng = random.Random(os.getpid())
                total = 0
                for _ in range(sample):
                    k = key(rng.randrange(n))
                    total += len(k) + len(proxy[k])
                return total, sample

        def spawn(body):
            p = ctx.Process(target=body)
            p.start()
            return p

        holders = [("Manager server", server)]
        out["rounds"] = [run_round(r, child, holders, spawn) for r in rounds_of]
        mgr.shutdown()

    elif store == "lmdb":
        try:
            import lmdb
        except Exception as e:
            fail(store, f"py-lmdb is not importable ({type(e).__name__}: {e}); pip install lmdb")
        out["lmdb"] = f"py-lmdb {lmdb.__version__} (LMDB {'.'.join(map(str, lmdb.version()))})"
        path = os.path.join(opts["--dir"], "shared-read.lmdb")
        env = lmdb.open(path, map_size=1 << 34, sync=False, metasync=False, max_readers=256)
        with env.begin(write=True) as txn:
            cur = txn.cursor()
            for i in range(n):  # keys come in sorted order
                cur.put(key(i).encode(), value(i).encode(), append=True)
        env.sync(True)
        env.close()
        out["build_s"] = time.perf_counter() - t
        st = os.stat(os.path.join(path, "data.mdb"))
        out["data_kib"] = st.st_blocks * 512 // 1024
        out["file_kib"] = st.st_size // 1024
        held = []

        def child():
            e = lmdb.open(path, readonly=True, max_readers=256)
            txn = e.begin()
            held.append((e, txn))  # the snapshot stays open (and mapped) until measured
            total = 0
            entries = 0
            for k, v in txn.cursor():
                total += len(k) + len(v)
                entries += 1
            return total, entries

        out["expected_total"] = expected_total(n)
        out["rounds"] = [run_round(r, child, []) for r in rounds_of]
    else:
        fail(store, f"unknown store {store!r}")

    out["total_s"] = time.perf_counter() - t
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as e:
        fail(sys.argv[1] if len(sys.argv) > 1 else "?", f"{type(e).__name__}: {e}")
