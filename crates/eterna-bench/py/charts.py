"""Charts for BENCHMARKS.md from the raw results the harnesses save.

    python3 charts.py DATA_DIR OUT_DIR [--write BENCHMARKS.md]

DATA_DIR holds what the harnesses wrote when run with ETERNA_BENCH_DATA=DATA_DIR
(alloc.json, rustops.json, shared.json, gc.json, pyops.json, open.json; any may be
missing). Draws
PNGs into OUT_DIR (needs matplotlib) and prints a Markdown section that links them; with
--write, puts it between the `bench-charts` markers of BENCHMARKS.md.
"""
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BEGIN = "<!-- bench-charts: begin -->"
END = "<!-- bench-charts: end -->"
COLORS = {"CPython (pymalloc)": "#000000", "pickle": "#1f77b4", "shelve": "#bcbd22", "zodb": "#17becf", "eterna": "#d62728", "eterna on tmpfs": "#ff9896", "glibc": "#1f77b4", "mimalloc": "#2ca02c",
          "jemalloc": "#9467bd", "heed": "#8c564b", "redb": "#e377c2", "hashmap": "#7f7f7f",
          "eterna-set": "#ff7f0e", "dict": "#7f7f7f", "lmdb": "#8c564b", "fork": "#1f77b4",
          "fork-freeze": "#17becf", "manager-items": "#bcbd22", "manager-get": "#e377c2"}


def load(data_dir, name):
    path = os.path.join(data_dir, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def memory_over_time(alloc, out):
    """RSS through each allocator workload, one line per allocator (first run)."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, w in zip(axes.flat, alloc):
        for name, runs in w["allocators"].items():
            if not runs or "series" not in runs[0]:
                continue
            pts = runs[0]["series"]
            ax.plot([p[0] / 1e6 for p in pts], [p[1] / 1024 for p in pts], label=name,
                    color=COLORS.get(name), linewidth=1.6, linestyle="--" if "tmpfs" in name else "-")
        n = next((runs[0].get("n") for runs in w["allocators"].values() if runs), None)
        ax.set_title(f"{w['workload']} ({n:,} blocks)" if n else w["workload"])
        ax.set_xlabel("operations (millions)")
        ax.set_ylabel("resident memory (MiB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Memory over time: allocate, then free (churn: allocate, free all, allocate again)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def bars(groups, series, values, title, ylabel, out, log=False):
    """Grouped bars: one group per entry of `groups`, one bar per entry of `series`."""
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / max(len(series), 1)
    for i, s in enumerate(series):
        xs = [g + i * width for g in range(len(groups))]
        ys = [values.get((grp, s)) or 0 for grp in groups]
        ax.bar(xs, ys, width, label=s, color=COLORS.get(s))
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))])
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def alloc_throughput(alloc, out):
    groups = [w["workload"] for w in alloc]
    series = list(alloc[0]["allocators"].keys())
    values = {(w["workload"], a): median([r.get("ops_per_sec") for r in runs])
              for w in alloc for a, runs in w["allocators"].items()}
    bars(groups, series, values, "Allocator throughput (alloc + free operations per second)", "ops/s", out)


def rustops_throughput(rust, out):
    phases = [("build", "bulk build (keys in order)"), ("build_random", "bulk build (random order)"),
              ("gets", "random gets"), ("txn_none", "1-key txns, no sync"), ("txn_commit", "1-key txns, synced")]
    stores = [s for s in rust if rust[s]]
    values = {}
    for label_key, label in phases:
        for s in stores:
            values[(label, s)] = median([r.get(f"{label_key}_ops") for r in rust[s]])
    groups = [label for _, label in phases]
    bars(groups, stores, values, "rust-ops: operations per second (log scale)", "ops/s", out, log=True)


def pyops_throughput(py, out):
    by = {}
    for r in py:
        by.setdefault(r["store"], []).append(r)
    fields = [("build_bulk", "n", "bulk build"), ("build_items", "n", "item by item"), ("reads", "reads_n", "random reads"),
              ("writes_commit", "writes_n", "1-key writes, synced"), ("writes_none", "writes_n", "1-key writes, no sync")]
    values = {}
    for f, count, label in fields:
        for s, runs in by.items():
            values[(label, s)] = median([r[count] / r[f] for r in runs if r.get(f)])
    groups = [label for _, _, label in fields]
    bars(groups, list(by), values, "py-ops: operations per second from Python (log scale)", "ops/s", out, log=True)


def readers_private(shared, out):
    """Private memory per reader process against the number of readers."""
    fig, ax = plt.subplots(figsize=(9, 5))
    for store, runs in shared.items():
        pts = {}
        for run in runs:
            for rnd in run.get("rounds", []):
                per = [r.get("Private_Dirty") for r in rnd.get("per_reader", [])]
                per = [p for p in per if p is not None]
                if per:
                    pts.setdefault(rnd["readers"], []).append(statistics.mean(per) / 1024)
        if pts:
            xs = sorted(pts)
            ax.plot(xs, [statistics.median(pts[x]) for x in xs], marker="o", label=store, color=COLORS.get(store))
    ax.set_xlabel("reader processes")
    ax.set_ylabel("private memory per reader (MiB)")
    n = next((run.get("n") for runs in shared.values() for run in runs if run.get("n")), None)
    ax.set_title(f"shared-read: what each reader of {n:,} str->str entries copies" if n else "shared-read")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def open_times(data, out):
    """Time from process start to the first record, per store."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    stores = list(data["times"])
    ms = [statistics.median(data["times"][s]) * 1e3 for s in stores]
    labels = [f"{s} ({data.get('kinds', {}).get(s)})" if s in data.get("kinds", {}) else s for s in stores]
    ax.bar(labels, ms, color=[COLORS.get(s, "#7f7f7f") for s in stores])
    ax.axhline(statistics.median(data["bare"]) * 1e3, color="black", linestyle=":", label="bare python3 start")
    ax.set_yscale("log")
    ax.set_ylabel("ms (log scale)")
    ax.set_title(f"open: a new process opens {data['n']:,} records and reads one")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}, eterna {commit or '?'}"


def main():
    args = sys.argv[1:]
    write = None
    if "--write" in args:
        i = args.index("--write")
        write = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    data_dir, out_dir = args
    os.makedirs(out_dir, exist_ok=True)
    made = []
    jobs = [("alloc", "memory-over-time.png", memory_over_time, "Memory over time through the allocator workloads (RSS; eterna's includes its mapped file)"),
            ("alloc", "throughput-alloc.png", alloc_throughput, "Allocator throughput per peer"),
            ("rustops", "throughput-rustops.png", rustops_throughput, "rust-ops throughput per peer"),
            ("pyops", "throughput-pyops.png", pyops_throughput, "py-ops throughput per peer"),
            ("shared", "readers-private.png", readers_private, "Private memory per reader process"),
            ("open", "open-first-read.png", open_times, "Time to the first record after a restart")]
    for name, png, fn, caption in jobs:
        data = load(data_dir, name)
        if not data:
            print(f"charts: no {name}.json in {data_dir}; skipping {png}", file=sys.stderr)
            continue
        fn(data, os.path.join(out_dir, png))
        made.append((png, caption))
    rel = os.path.relpath(out_dir, os.path.dirname(os.path.abspath(write)) if write else ".")
    lines = ["## Charts", "",
             f"Drawn by `crates/eterna-bench/py/charts.py` from the raw results of the runs above, "
             f"{datetime.date.today().isoformat()}, on {machine()}.", ""]
    for png, caption in made:
        lines += [f"**{caption}**", "", f"![{caption}]({rel}/{png})", ""]
    text = "\n".join(lines)
    print(text)
    if write:
        with open(write) as f:
            doc = f.read()
        block = f"{BEGIN}\n{text}\n{END}\n"
        if BEGIN in doc and END in doc:  # the charts close the file: cut them out, append
            a, b = doc.index(BEGIN), doc.index(END) + len(END)
            doc = doc[:a].rstrip("\n") + "\n" + doc[b:].lstrip("\n")
        doc = doc.rstrip("\n") + "\n\n" + block
        with open(write, "w") as f:
            f.write(doc)


if __name__ == "__main__":
    main()
