"""The `py-ops` benchmark: eterna from Python against dict, py-lmdb, shelve, sqlitedict and
multiprocessing.Manager().dict() on N str->str entries.

    python3 py_ops.py [--n N | --quick] [--runs R] [--reads R] [--writes W] [--peer-n P]
                      [--stores a,b,...] [--write BENCHMARKS.md]

Phases, each timed on its own, in every store:
  build   N entries in one transaction, two ways where the store has both: all at once
          (eterna `db.root["data"] = d`; lmdb `Cursor.putmulti`; `dict(d)`;
          sqlitedict `update`; Manager `update`) and item by item (eterna `d2[k] = v`
          inside one `with db.transaction()`; lmdb `txn.put` in a loop; shelve and
          sqlitedict `x[k] = v` then one sync/commit; Manager `md[k] = v`). Every store
          starts from the same prebuilt Python dict of str; encoding to bytes (lmdb) is
          part of the timed work.
  reads   random point reads of existing keys, each returning the value as a str (eterna
          inside one `db.snapshot()`; lmdb inside one read transaction, `.get(k.encode())
          .decode()`).
  writes  single-key committed transactions updating random existing keys, once with the
          store's default durability (eterna sync="commit", lmdb sync=True; shelve
          `sync()` and sqlitedict `commit()` after each write) and once without syncing
          (eterna sync="none", lmdb sync=False/metasync=False; Manager, which persists
          nothing, is listed here). For eterna and lmdb the synced writes also report the
          write requests and KiB per commit that the block device holding the files
          counted meanwhile (Linux /sys/dev/block; other processes' writes count too).

Each (store, run) is a fresh subprocess of this script (`--worker STORE`), so memory and
caches other than the OS page cache do not carry over; stores are interleaved within a run;
the tables give medians over runs. shelve, sqlitedict and Manager get N = min(N, --peer-n)
entries (default 100,000) and fewer reads and writes where they would take minutes; their
rates are per operation all the same.
"""
import argparse
import datetime
import gc
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BEGIN = "<!-- bench-pyops: begin -->"
END = "<!-- bench-pyops: end -->"
STORES = ("dict", "eterna", "lmdb", "shelve", "sqlitedict", "manager")
SLOW = {"shelve", "sqlitedict", "manager"}  # capped at --peer-n entries


def key(i):
    return f"key{i:07d}"  # as in shared/anchors/py_peers.py


def value(i):
    return f"value-{i * 7919 % 1000003}"


def new_value(j):
    return f"updated-{j:07d}"


def inputs(n, reads, writes, seed=7):
    """The prebuilt dict, the probe keys and the (key, new value) writes, untimed."""
    d = {key(i): value(i) for i in range(n)}
    rnd = random.Random(seed)
    probe = [key(rnd.randrange(n)) for _ in range(reads)]
    upd = [(key(rnd.randrange(n)), new_value(j)) for j in range(writes)]
    return d, probe, upd


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def disk_writes(path):
    """(write requests, 512-byte sectors written) so far by the block device holding
    `path`, from /sys/dev/block/MAJ:MIN/stat; None where there is none (tmpfs). The
    counters count every process's writes to that device."""
    dev = os.stat(path).st_dev
    try:
        with open(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat") as f:
            fields = f.read().split()
        return int(fields[4]), int(fields[6])
    except (OSError, IndexError, ValueError):
        return None


def timed_io(fn, path, count):
    """Seconds `fn` took, and the device's write requests and KiB per operation (`count`
    of them) meanwhile, or None for those where the device has no counters."""
    before = disk_writes(path)
    secs = timed(fn)
    after = disk_writes(path)
    if before is None or after is None:
        return secs, None
    return secs, [(after[0] - before[0]) / count, (after[1] - before[1]) / 2 / count]


def du(path):
    if os.path.isfile(path):
        return os.stat(path).st_blocks * 512
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.stat(os.path.join(root, f)).st_blocks * 512
    return total


# ---------------------------------------------------------------- workers (one per store)

def w_dict(a, d, probe, upd, tmp):
    r = {}
    out = {}
    r["build_bulk"] = timed(lambda: out.__setitem__("x", dict(d)))

    def items():
        x = {}
        for k, v in d.items():
            x[k] = v
    r["build_items"] = timed(items)
    x = out["x"]

    def reads():
        for k in probe:
            x[k]
    r["reads"] = timed(reads)
    r["check"] = all(x[k] == d[k] for k in probe[:1000])
    return r


def w_eterna(a, d, probe, upd, tmp):
    import eterna
    r = {}
    p = os.path.join(tmp, "bulk.eterna")
    db = eterna.open(p, sync="commit")

    def bulk():
        db.root["data"] = d
    r["build_bulk"] = timed(bulk)

    p2 = os.path.join(tmp, "items.eterna")
    db2 = eterna.open(p2, sync="commit")

    def items():
        with db2.transaction() as root:
            root["data"] = {}
            d2 = root["data"]
            for k, v in d.items():
                d2[k] = v
    r["build_items"] = timed(items)
    with db2.snapshot() as root:
        r["check_items"] = len(root["data"]) == len(d)
    db2.close()
    os.unlink(p2)
    r["file_bytes"] = du(p)

    def reads():
        with db.snapshot() as root:
            data = root["data"]
            for k in probe:
                data[k]
    r["reads"] = timed(reads)
    with db.snapshot() as root:
        data = root["data"]
        r["check"] = r["check_items"] and all(data[k] == d[k] for k in probe[:1000])
    db.close()

    half = len(upd) // 2
    for sync in ("commit", "none"):
        db = eterna.open(p, sync=sync)
        # the expression form: each write opens a snapshot to find root["data"], then commits
        def expr(ws=upd[:half]):
            for k, v in ws:
                db.root["data"][k] = v
        # the proxy for root["data"] held across writes: one committed transaction per write
        def held(ws=upd[half:]):
            data = db.root["data"]
            for k, v in ws:
                data[k] = v
        secs, r[f"io_{sync}_expr"] = timed_io(expr, tmp, half)
        r[f"writes_{sync}_expr"] = secs * len(upd) / half
        secs, r[f"io_{sync}_held"] = timed_io(held, tmp, len(upd) - half)
        r[f"writes_{sync}_held"] = secs * len(upd) / (len(upd) - half)
        db.close()
    db = eterna.open(p, readonly=True)
    with db.snapshot() as root:
        data = root["data"]
        last = dict(upd)
        r["check"] = r["check"] and all(data[k] == v for k, v in last.items())
    db.close()
    return r


def w_lmdb(a, d, probe, upd, tmp):
    import lmdb
    r = {}
    p = os.path.join(tmp, "bulk.lmdb")
    env = lmdb.open(p, map_size=1 << 34)  # defaults: sync=True, metasync=True

    def bulk():
        with env.begin(write=True) as txn:
            txn.cursor().putmulti((k.encode(), v.encode()) for k, v in d.items())
    r["build_bulk"] = timed(bulk)

    p2 = os.path.join(tmp, "items.lmdb")
    env2 = lmdb.open(p2, map_size=1 << 34)

    def items():
        with env2.begin(write=True) as txn:
            for k, v in d.items():
                txn.put(k.encode(), v.encode())
    r["build_items"] = timed(items)
    r["check_items"] = env2.stat()["entries"] == len(d)
    env2.close()
    shutil.rmtree(p2)
    r["file_bytes"] = du(p)

    def reads():
        with env.begin() as txn:
            for k in probe:
                txn.get(k.encode()).decode()
    r["reads"] = timed(reads)
    with env.begin() as txn:
        r["check"] = r["check_items"] and all(txn.get(k.encode()).decode() == d[k] for k in probe[:1000])
    env.close()

    for mode, kw in (("commit", {}), ("none", {"sync": False, "metasync": False})):
        env = lmdb.open(p, map_size=1 << 34, **kw)

        def writes():
            for k, v in upd:
                with env.begin(write=True) as txn:
                    txn.put(k.encode(), v.encode())
        r[f"writes_{mode}"], r[f"io_{mode}"] = timed_io(writes, tmp, len(upd))
        env.close()
    env = lmdb.open(p, readonly=True)
    with env.begin() as txn:
        r["check"] = r["check"] and all(txn.get(k.encode()).decode() == v for k, v in dict(upd).items())
    env.close()
    return r


def w_shelve(a, d, probe, upd, tmp):
    import dbm
    import shelve
    r = {}
    p = os.path.join(tmp, "shelf")
    sh = shelve.open(p)

    def items():
        for k, v in d.items():
            sh[k] = v
        sh.sync()
    r["build_items"] = timed(items)
    r["backend"] = dbm.whichdb(p)

    def reads():
        for k in probe:
            sh[k]
    r["reads"] = timed(reads)
    r["check"] = all(sh[k] == d[k] for k in probe[:1000])

    def writes():
        for k, v in upd:
            sh[k] = v
            sh.sync()
    r["writes_commit"] = timed(writes)
    sh.close()
    r["file_bytes"] = sum(du(os.path.join(tmp, f)) for f in os.listdir(tmp))
    return r


def w_sqlitedict(a, d, probe, upd, tmp):
    from sqlitedict import SqliteDict
    r = {}
    sd = SqliteDict(os.path.join(tmp, "bulk.sqlite"), autocommit=False)

    def bulk():
        sd.update(d)
        sd.commit()
    r["build_bulk"] = timed(bulk)
    sd2 = SqliteDict(os.path.join(tmp, "items.sqlite"), autocommit=False)

    def items():
        for k, v in d.items():
            sd2[k] = v
        sd2.commit()
    r["build_items"] = timed(items)
    r["check_items"] = len(sd2) == len(d)
    sd2.close()

    def reads():
        for k in probe:
            sd[k]
    r["reads"] = timed(reads)
    r["check"] = r["check_items"] and all(sd[k] == d[k] for k in probe[:1000])

    def writes():
        for k, v in upd:
            sd[k] = v
            sd.commit()
    r["writes_commit"] = timed(writes)
    sd.close()
    r["file_bytes"] = du(os.path.join(tmp, "bulk.sqlite"))
    return r


def w_manager(a, d, probe, upd, tmp):
    from multiprocessing import Manager
    r = {}
    with Manager() as m:
        md = m.dict()
        r["build_bulk"] = timed(lambda: md.update(d))
        md2 = m.dict()

        def items():
            for k, v in d.items():
                md2[k] = v
        r["build_items"] = timed(items)
        r["check_items"] = len(md2) == len(d)
        del md2

        def reads():
            for k in probe:
                md[k]
        r["reads"] = timed(reads)
        r["check"] = r["check_items"] and all(md[k] == d[k] for k in probe[:1000])

        def writes():
            for k, v in upd:
                md[k] = v
        r["writes_none"] = timed(writes)
    return r


WORKERS = {"dict": w_dict, "eterna": w_eterna, "lmdb": w_lmdb, "shelve": w_shelve,
           "sqlitedict": w_sqlitedict, "manager": w_manager}


def sizes(a, store):
    """(entries, reads, writes) for a store: the slow peers are capped."""
    if store not in SLOW:
        return a.n, a.reads, a.writes
    n = min(a.n, a.peer_n)
    reads = min(a.reads, n, 100_000 if store == "shelve" else 20_000)
    # shelve falls back to dbm.dumb where CPython lacks _gdbm/_dbm; its sync() rewrites the
    # whole index, so synced writes run at tens per second
    return n, reads, min(a.writes, {"shelve": 200, "sqlitedict": 2_000}.get(store, a.writes))


def worker(a):
    n, reads, writes = sizes(a, a.worker)
    d, probe, upd = inputs(n, reads, writes)
    gc.collect()
    tmp = tempfile.mkdtemp(prefix=f"pyops-{a.worker}-", dir=a.dir)
    try:
        r = WORKERS[a.worker](a, d, probe, upd, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r.update(store=a.worker, n=n, reads_n=reads, writes_n=writes,
             maxrss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(json.dumps(r), flush=True)


# ---------------------------------------------------------------- driver

def rate(count, secs):
    return count / secs if secs else None


def fmt(x):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:,.1f}"


def fratio(x):
    return "–" if x is None else f"{x:.2f}×"


def machine(a, wall):
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO).stdout.strip()
        except OSError:
            return "?"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 2**20
    import lmdb
    import sqlite3
    try:
        from importlib.metadata import version
        sqd = version("sqlitedict")
    except Exception:
        sqd = "?"
    import eterna._eterna as native
    built = datetime.datetime.fromtimestamp(os.stat(native.__file__).st_mtime, datetime.timezone.utc)
    head = sh("git", "rev-parse", "--short", "HEAD")
    dirty = sh("git", "status", "--porcelain", "--", "crates/eterna", "crates/eterna-python", "python")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu": cpu, "mem_gib": mem,
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_implementation() + " " + platform.python_version(),
        "lmdb": f"py-lmdb {lmdb.__version__} (LMDB {'.'.join(map(str, lmdb.version()))})",
        "sqlitedict": f"sqlitedict {sqd} (SQLite {sqlite3.sqlite_version})",
        "eterna": f"eterna at commit {head}" + (" plus uncommitted changes" if dirty else "")
                  + f"; the installed package was built {built:%Y-%m-%d %H:%M UTC}",
        "wall": wall,
    }


def summarize(a, results, info):
    """Medians per store and quantity, and the markdown section."""
    by = {}
    for r in results:
        by.setdefault(r["store"], []).append(r)

    def med(store, fn):
        vals = [fn(r) for r in by.get(store, [])]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    def ops(store, field, count):
        return med(store, lambda r: rate(r[count], r[field]) if field in r else None)

    M = {}
    for s in by:
        M[s] = {
            "bulk": ops(s, "build_bulk", "n"), "items": ops(s, "build_items", "n"),
            "reads": ops(s, "reads", "reads_n"),
            "w_commit": ops(s, "writes_commit", "writes_n"), "w_none": ops(s, "writes_none", "writes_n"),
            "w_commit_expr": ops(s, "writes_commit_expr", "writes_n"),
            "w_commit_held": ops(s, "writes_commit_held", "writes_n"),
            "w_none_expr": ops(s, "writes_none_expr", "writes_n"),
            "w_none_held": ops(s, "writes_none_held", "writes_n"),
            "file": med(s, lambda r: r.get("file_bytes")), "rss": med(s, lambda r: r["maxrss_kib"]),
            "runs": len(by[s]), "n": by[s][0]["n"], "reads_n": by[s][0]["reads_n"],
            "writes_n": by[s][0]["writes_n"], "check": all(r.get("check", True) for r in by[s]),
        }
        for field in ("io_commit", "io_commit_expr", "io_commit_held"):
            for i, unit in enumerate(("requests", "kib")):
                M[s][f"{field}_{unit}"] = med(s, lambda r: r[field][i] if r.get(field) else None)

    def per_run_ratios(f_et, f_peer, peer):
        """eterna/peer per run, pairing the i-th run of each (same run, interleaved)."""
        out = []
        for re, rp in zip(by.get("eterna", []), by.get(peer, [])):
            x, y = f_et(re), f_peer(rp)
            if x and y:
                out.append(x / y)
        return out

    L = []
    L.append(BEGIN)
    L.append("## Python operations (`py-ops`): eterna, dict, py-lmdb, shelve, sqlitedict, Manager().dict()")
    L.append("")
    L.append(f"Command: `{info['command']}` (wall time {info['wall']:.0f} s)")
    L.append("")
    L.append(f"- date: {info['date']}")
    L.append(f"- machine: `nproc` = {info['nproc']} ({info['cpu']}), {info['mem_gib']:.1f} GiB memory, "
             f"kernel {info['kernel']}; shared with other work, so absolute figures drift: compare ratios")
    L.append(f"- software: {info['python']}; {info['lmdb']}; {info['sqlitedict']}; shelve on "
             f"`{by['shelve'][0].get('backend', '?') if 'shelve' in by else '?'}`; {info['eterna']}; "
             f"files in fresh temporary directories under `{a.dir or tempfile.gettempdir()}`")
    L.append(f"- N = {a.n} entries str → str for dict, eterna and py-lmdb "
             f"({M.get('eterna', {}).get('reads_n', a.reads)} random reads, "
             f"{M.get('eterna', {}).get('writes_n', a.writes)} single-key writes per durability mode); "
             + "; ".join(f"{s}: N = {M[s]['n']}, {M[s]['reads_n']} reads, {M[s]['writes_n']} writes"
                         for s in ("shelve", "sqlitedict", "manager") if s in M)
             + f" (capped: at full N they take minutes). Medians of {a.runs} run(s); each store in a fresh "
             "subprocess per run, stores interleaved within a run.")
    L.append("")
    L.append("Keys `key{i:07d}` (10 bytes), values `value-{i*7919 % 1000003}` (7–13 bytes), as in "
             "`anchors/py_peers.py`; every store starts from the same prebuilt `dict` of `str` and "
             "inserts in key order; writes update random existing keys to `updated-{j:07d}`. "
             "Encoding and decoding (py-lmdb stores `bytes`) are part of the timed work, so every read "
             "returns a `str`.")
    L.append("")
    L.append("- **Build, all at once** (one transaction, default durability: one sync at commit): eterna "
             "`db.root[\"data\"] = d`; py-lmdb `txn.cursor().putmulti((k.encode(), v.encode()) for k, v in "
             "d.items())`; dict `dict(d)`; sqlitedict `update(d)` + `commit()`; Manager `md.update(d)` "
             "(one round trip, pickles the whole dict).")
    L.append("- **Build, item by item** (one transaction): eterna `with db.transaction() as root: "
             "root[\"data\"] = {}; d2 = root[\"data\"]` then `d2[k] = v` per item; py-lmdb `txn.put(k.encode(), "
             "v.encode())` per item; dict `x[k] = v`; shelve and sqlitedict `x[k] = v` then one "
             "`sync()` / `commit()`; Manager `md[k] = v` (one round trip each).")
    L.append("- **Random reads**: eterna `data[k]` inside one `with db.snapshot() as root: data = "
             "root[\"data\"]`; py-lmdb `txn.get(k.encode()).decode()` inside one `env.begin()`; "
             "the others `x[k]`.")
    L.append("- **Single-key writes**, each its own committed transaction: eterna `db.root[\"data\"][k] = v` "
             "(expression form: a snapshot to find `root[\"data\"]`, then a write transaction) and `data[k] = v` "
             "with `data = db.root[\"data\"]` held (half the writes each), sync=\"commit\" (one fdatasync per "
             "commit) and sync=\"none\"; py-lmdb `with env.begin(write=True) as t: t.put(...)`, default "
             "`sync=True` and `sync=False, metasync=False`; shelve `sh[k] = v; sh.sync()`; sqlitedict "
             "`sd[k] = v; sd.commit()`; Manager `md[k] = v` (persists nothing: listed under no sync).")
    L.append("")
    L.append("Operations per second (medians):")
    L.append("")
    L.append("| store | N | build, all at once | build, item by item | random reads | "
             "writes, synced | writes, no sync | file MiB | peak RSS MiB | runs |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = {"dict": "dict (in-process)", "eterna": "eterna", "lmdb": "py-lmdb", "shelve": "shelve",
             "sqlitedict": "sqlitedict", "manager": "Manager().dict()"}
    for s in STORES:
        if s not in M:
            continue
        m = M[s]
        wc, wn = m["w_commit"], m["w_none"]
        if s == "eterna":
            wc = f"{fmt(m['w_commit_expr'])} / {fmt(m['w_commit_held'])}"
            wn = f"{fmt(m['w_none_expr'])} / {fmt(m['w_none_held'])}"
        else:
            wc, wn = fmt(wc), fmt(wn)
        f = "–" if m["file"] is None else f"{m['file'] / 2**20:.1f}"
        L.append(f"| {names[s]} | {m['n']:,} | {fmt(m['bulk'])} | {fmt(m['items'])} | {fmt(m['reads'])} | "
                 f"{wc} | {wn} | {f} | {m['rss'] / 1024:.0f} | {m['runs']} |")
    L.append("")
    L.append("eterna's writes: expression form `db.root[\"data\"][k] = v` / held proxy `data[k] = v`. "
             "Peak RSS is the worker's whole process, including the input dict, probe list and interpreter.")
    L.append("")

    E, Lm, D = M.get("eterna", {}), M.get("lmdb", {}), M.get("dict", {})

    def ratio(x, y):
        return x / y if x and y else None

    rows = [
        ("build, all at once", "bulk", "bulk", "bulk"),
        ("build, item by item", "items", "items", "items"),
        ("random reads", "reads", "reads", "reads"),
        ("writes, synced, `db.root[\"data\"][k] = v`", "w_commit_expr", "w_commit", None),
        ("writes, synced, held proxy", "w_commit_held", "w_commit", None),
        ("writes, no sync, `db.root[\"data\"][k] = v`", "w_none_expr", "w_none", None),
        ("writes, no sync, held proxy", "w_none_held", "w_none", None),
    ]
    L.append("| phase | eterna ops/s | py-lmdb ops/s | dict ops/s | eterna / py-lmdb | eterna / dict |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for label, fe, fl, fd in rows:
        e, l_, dd = E.get(fe), Lm.get(fl), D.get(fd) if fd else None
        L.append(f"| {label} | {fmt(e)} | {fmt(l_)} | {fmt(dd)} | {fratio(ratio(e, l_))} | {fratio(ratio(e, dd))} |")
    L.append("")

    def verdict(value, goal, per_run):
        if value is None:
            return "not measured"
        ok = value >= goal
        k = sum(1 for x in per_run if x >= goal)
        return f"**{'met' if ok else 'missed'}** ({value:.2f}×; met in {k} of {len(per_run)} run(s))"

    def pr(fe, fp, peer, count_e, count_p):
        return per_run_ratios(lambda r: rate(r[count_e], r[fe]) if fe in r else None,
                              lambda r: rate(r[count_p], r[fp]) if fp in r else None, peer)

    L.append("### Targets")
    L.append("")
    L.append(f"- random reads ≥ 2 × py-lmdb: {verdict(ratio(E.get('reads'), Lm.get('reads')), 2.0, pr('reads', 'reads', 'lmdb', 'reads_n', 'reads_n'))}")
    L.append(f"- random reads ≥ 0.5 × dict: {verdict(ratio(E.get('reads'), D.get('reads')), 0.5, pr('reads', 'reads', 'dict', 'reads_n', 'reads_n'))}")
    L.append(f"- bulk build ≥ 1.5 × py-lmdb, all at once (`db.root[\"data\"] = d` against `putmulti`): "
             f"{verdict(ratio(E.get('bulk'), Lm.get('bulk')), 1.5, pr('build_bulk', 'build_bulk', 'lmdb', 'n', 'n'))}")
    L.append(f"- bulk build ≥ 1.5 × py-lmdb, item by item (in one transaction, against `txn.put`): "
             f"{verdict(ratio(E.get('items'), Lm.get('items')), 1.5, pr('build_items', 'build_items', 'lmdb', 'n', 'n'))}")
    L.append(f"- single-key committed writes ≥ py-lmdb (sync=\"commit\" against py-lmdb's default sync), "
             f"`db.root[\"data\"][k] = v`: "
             f"{verdict(ratio(E.get('w_commit_expr'), Lm.get('w_commit')), 1.0, pr('writes_commit_expr', 'writes_commit', 'lmdb', 'writes_n', 'writes_n'))}; "
             f"held proxy: {verdict(ratio(E.get('w_commit_held'), Lm.get('w_commit')), 1.0, pr('writes_commit_held', 'writes_commit', 'lmdb', 'writes_n', 'writes_n'))}")
    L.append(f"- the same without sync (information; sync=\"none\" against `sync=False, metasync=False`): "
             f"expression form {fratio(ratio(E.get('w_none_expr'), Lm.get('w_none')))}, "
             f"held proxy {fratio(ratio(E.get('w_none_held'), Lm.get('w_none')))}")
    def io(store, field):
        m = M.get(store, {})
        q, k = m.get(f"{field}_requests"), m.get(f"{field}_kib")
        return "not measured" if q is None else f"{q:.1f} write requests, {k:.1f} KiB"
    L.append(f"- disk writes per synced single-key commit (medians; the counters of the device holding the "
             f"files, `/sys/dev/block/MAJ:MIN/stat`, which also count other processes' writes): eterna "
             f"expression form {io('eterna', 'io_commit_expr')}, held proxy {io('eterna', 'io_commit_held')}; "
             f"py-lmdb {io('lmdb', 'io_commit')}")
    bad = [s for s in M if not M[s]["check"]]
    L.append(f"- checks: 1,000 of each store's reads returned the expected value; eterna and py-lmdb, reopened "
             f"read-only after the writes, held every key's last written value: "
             f"{'yes' if not bad else 'NO: ' + ', '.join(bad)}")
    L.append(END)
    return M, "\n".join(L) + "\n"


def write_section(path, text):
    with open(path) as f:
        old = f.read()
    b, e = old.find(BEGIN), old.find(END)
    if b >= 0 and e > b:
        new = old[:b] + text + old[e + len(END):].lstrip("\n")
        if not new.endswith("\n"):
            new += "\n"
    else:
        new = old.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="N = 100,000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reads", type=int, default=None, help="random reads (default N)")
    ap.add_argument("--writes", type=int, default=5_000, help="single-key writes per durability mode")
    ap.add_argument("--peer-n", type=int, default=100_000, help="entries for shelve, sqlitedict, Manager")
    ap.add_argument("--stores", default=",".join(STORES))
    ap.add_argument("--dir", default=None, help="where the stores' files go (default: the temp dir)")
    ap.add_argument("--write", metavar="FILE", help="write the section into FILE (BENCHMARKS.md)")
    ap.add_argument("--worker", choices=STORES, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.quick:
        a.n = 100_000
    if a.reads is None:
        a.reads = a.n
    if a.worker:
        return worker(a)

    stores = [s for s in a.stores.split(",") if s]
    t0 = time.perf_counter()
    results = []
    for run in range(a.runs):
        for s in stores:
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", s, "--n", str(a.n),
                   "--reads", str(a.reads), "--writes", str(a.writes), "--peer-n", str(a.peer_n)]
            if a.dir:
                cmd += ["--dir", a.dir]
            t = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                sys.stderr.write(p.stderr)
                sys.exit(f"py-ops: worker {s} failed (run {run + 1})")
            r = json.loads(p.stdout.strip().splitlines()[-1])
            r["run"] = run
            results.append(r)
            print(json.dumps(r), flush=True)
            print(f"# run {run + 1}/{a.runs} {s}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    info = machine(a, wall)
    argv = [os.path.relpath(os.path.abspath(__file__), REPO)] + sys.argv[1:]
    info["command"] = "python3 " + " ".join(argv)
    M, text = summarize(a, results, info)
    print(text)
    data_dir = os.environ.get("ETERNA_BENCH_DATA")
    if data_dir:  # raw results for the charts (crates/eterna-bench/py/charts.py)
        os.makedirs(data_dir, exist_ok=True)
        with open(os.path.join(data_dir, "pyops.json"), "w") as f:
            json.dump(results, f)
    if a.write:
        write_section(a.write, text)


if __name__ == "__main__":
    main()
