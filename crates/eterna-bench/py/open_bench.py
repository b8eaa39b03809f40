"""The `open` benchmark: a new process opens a saved 1M-record dataset and reads one record.

    python3 open_bench.py [--n N | --quick] [--runs R] [--stores a,b,...] [--write BENCHMARKS.md]

Each store is built once (untimed) in a temporary directory: N records `key:%010d` ->
`value number i vvvvvvvvvvvv`. Then, R times per store (interleaved), a fresh Python
process imports what it needs, opens the store, reads one record and checks it; the
figure is that process's wall time from spawn to exit, measured by this driver, with
the bare interpreter start (`python3 -c pass`) measured the same way for reference.

Stores: eterna (the Python package: `eterna.open(path, readonly=True)`, then
`db.root["data"][k]`), pickle (`pickle.load` of a dict), shelve (dbm), zodb (a
FileStorage holding an OOBTree). Peers that are not importable are reported as not
measured. With --write, the section goes between the `bench-open` markers.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BEGIN = "<!-- bench-open: begin -->"
END = "<!-- bench-open: end -->"
STORES = ["eterna", "pickle", "shelve", "zodb"]


def key(i):
    return f"key:{i:010d}"


def value(i):
    return f"value number {i} {'v' * 12}"


def build(store, n, d):
    data = {key(i): value(i) for i in range(n)}
    if store == "eterna":
        import eterna
        p = os.path.join(d, "data.eterna")
        db = eterna.open(p, sync="none")
        db.root["data"] = data
        db.close()
    elif store == "pickle":
        import pickle
        p = os.path.join(d, "data.pickle")
        with open(p, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    elif store == "shelve":
        import shelve
        p = os.path.join(d, "data.shelve")
        with shelve.open(p) as sh:
            sh.update(data)
    elif store == "zodb":
        import BTrees.OOBTree
        import ZODB
        import ZODB.FileStorage
        p = os.path.join(d, "data.fs")
        db = ZODB.DB(ZODB.FileStorage.FileStorage(p))
        with db.transaction() as conn:
            t = BTrees.OOBTree.OOBTree()
            t.update(data)
            conn.root.data = t
        db.close()
    return p


# What the fresh process runs: open, read one record, print it.
READERS = {
    "eterna": "import eterna, sys\ndb = eterna.open(sys.argv[1], readonly=True)\nprint(db.root['data'][sys.argv[2]])",
    "pickle": "import pickle, sys\nwith open(sys.argv[1], 'rb') as f:\n    d = pickle.load(f)\nprint(d[sys.argv[2]])",
    "shelve": "import shelve, sys\nwith shelve.open(sys.argv[1], 'r') as sh:\n    print(sh[sys.argv[2]])",
    "zodb": "import sys, ZODB, ZODB.FileStorage\n"
            "db = ZODB.DB(ZODB.FileStorage.FileStorage(sys.argv[1], read_only=True))\n"
            "conn = db.open()\nprint(conn.root.data[sys.argv[2]])",
}


def timed(args):
    t = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True)
    return time.perf_counter() - t, p


def importable(store):
    mod = {"eterna": "eterna", "pickle": "pickle", "shelve": "shelve", "zodb": "ZODB"}[store]
    try:
        __import__(mod)
        return None
    except ImportError as e:
        return str(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="N = 100,000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--stores", default=",".join(STORES))
    ap.add_argument("--write", metavar="FILE")
    a = ap.parse_args()
    if a.quick:
        a.n = 100_000
    stores = [s for s in a.stores.split(",") if s]
    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="bench-open-")
    paths, missing, sizes, kinds = {}, {}, {}, {}
    try:
        for s in stores:
            why = importable(s)
            if why:
                missing[s] = why
                print(f"# {s}: not measured ({why})", file=sys.stderr)
                continue
            t = time.perf_counter()
            d = os.path.join(tmp, s)
            os.makedirs(d)
            paths[s] = build(s, a.n, d)
            sizes[s] = sum(os.stat(os.path.join(d, f)).st_blocks * 512 for f in os.listdir(d))
            if s == "shelve":
                import dbm
                kinds[s] = dbm.whichdb(paths[s]) or "?"
            print(f"# built {s} in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        probe = key(a.n // 2)
        want = value(a.n // 2)
        times = {s: [] for s in paths}
        bare = []
        for run in range(a.runs):
            bare.append(timed([sys.executable, "-c", "pass"])[0])
            for s, p in paths.items():
                el, out = timed([sys.executable, "-c", READERS[s], p, probe])
                if out.returncode != 0 or out.stdout.strip() != want:
                    sys.exit(f"open: {s} read {out.stdout.strip()!r}, not {want!r}: {out.stderr.strip()}")
                times[s].append(el)
                print(f"# run {run + 1}/{a.runs} {s}: {el * 1e3:.0f} ms", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {s: statistics.median(v) for s, v in times.items()}
    bare_m = statistics.median(bare)
    data_dir = os.environ.get("ETERNA_BENCH_DATA")
    if data_dir:
        os.makedirs(data_dir, exist_ok=True)
        with open(os.path.join(data_dir, "open.json"), "w") as f:
            json.dump({"n": a.n, "times": times, "bare": bare, "sizes": sizes, "kinds": kinds}, f)
    lines = [
        f"## open: a new process opens {a.n:,} records and reads one", "",
        f"Command: `python3 crates/eterna-bench/py/open_bench.py {' '.join(sys.argv[1:])}` "
        f"(wall time {time.perf_counter() - t0:.0f} s). {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}.", "",
        "| store | time to the first record (process wall time) | minus interpreter start | eterna is faster by | on disk |",
        "|---|---:|---:|---:|---:|",
    ]
    et = med.get("eterna")
    for s in stores:
        if s in missing:
            lines.append(f"| {s} | not measured ({missing[s]}) | | | |")
            continue
        m = med[s]
        ratio = f"{m / et:.1f}x" if et and s != "eterna" else ""
        label = f"{s} ({kinds[s]})" if s in kinds else s
        lines.append(f"| {label} | {m * 1e3:.0f} ms | {(m - bare_m) * 1e3:.0f} ms | {ratio} | {sizes[s] / 2**20:.1f} MiB |")
    lines += ["", f"- Each figure: the median of {a.runs} fresh `python3` processes (spawn to exit, measured by the driver), "
              f"each importing its module, opening the store read-only, reading `{probe}` and printing it; the bare "
              f"interpreter start (`python3 -c pass`) took {bare_m * 1e3:.0f} ms, subtracted in the third column.",
              "- eterna maps the file and follows the root to one record; pickle must rebuild the whole dict first; "
              "shelve reads through whichever dbm this Python has (`dbm.dumb`, the fallback, loads its whole key index "
              "first) and ZODB (FileStorage with an OOBTree) reads its index and a few objects."]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.write:
        with open(a.write) as f:
            doc = f.read()
        block = f"{BEGIN}\n{text}{END}\n"
        if BEGIN in doc and END in doc:
            i, j = doc.index(BEGIN), doc.index(END) + len(END)
            doc = doc[:i] + block.rstrip("\n") + doc[j:]
        else:
            doc = doc.rstrip("\n") + "\n\n" + block
        with open(a.write, "w") as f:
            f.write(doc)


if __name__ == "__main__":
    main()
