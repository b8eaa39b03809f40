"""The Python package end to end: real heap files, real processes."""

import dataclasses
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import MutableMapping, MutableSequence, MutableSet

import pytest

import eterna
from eterna import Detached


@pytest.fixture
def db(tmp_path):
    d = eterna.open(tmp_path / "heap")
    yield d
    d.close()


@dataclasses.dataclass
class Frob:
    foo: int
    bar: int


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


eterna.register(Frob)
eterna.register(Point)


def test_every_value_type_round_trips(db):
    value = {
        "none": None, "t": True, "i": -42, "big": 2**100, "f": 2.5, "s": "ünïcödé text",
        "b": b"\x00raw", "tuple": (1, "x", (2.0,)), "list": [1, [2, 3]], "set": {1, 2},
        "frozen": frozenset({"a"}), "nested": {"deep": {"deeper": [None]}},
    }
    db.root["v"] = value
    got = eterna.unwrap(db.root["v"])
    assert got == value
    assert isinstance(db.root["v"]["tuple"], tuple)
    assert isinstance(db.root["v"]["frozen"], frozenset)
    assert db.root["v"]["big"] == 2**100


def test_proxies_are_the_abstract_types(db):
    db.root["d"] = {"l": [1], "s": {1}}
    assert isinstance(db.root, MutableMapping)
    assert isinstance(db.root["d"], eterna.Dict)
    assert isinstance(db.root["d"]["l"], MutableSequence)
    assert isinstance(db.root["d"]["s"], MutableSet)


def test_write_through_and_persistence(tmp_path):
    path = tmp_path / "heap"
    db = eterna.open(path)
    db.root["k"] = {"a": [1, 2.5, "x"], "b": b"raw"}
    db.root["k"]["a"].append(3)
    db.close()
    # Another process reads it back: nothing was pickled, nothing is executed.
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import eterna
            db = eterna.open({str(path)!r}, readonly=True)
            print(eterna.unwrap(db.root["k"]))
        """)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.strip() == "{'a': [1, 2.5, 'x', 3], 'b': b'raw'}"


def test_transaction_commits_or_rolls_back(db):
    with db.transaction() as root:
        root["x"] = Frob(foo=9, bar=23)
        root["x"].foo = 10
    assert db.root["x"].foo == 10
    with pytest.raises(RuntimeError):
        with db.transaction() as root:
            root["x"].foo = 99
            root["y"] = 1
            raise RuntimeError("abort")
    assert db.root["x"].foo == 10
    assert "y" not in db.root


def test_snapshot_is_consistent_and_read_only(db):
    db.root["counts"] = {"a": 1, "b": 2}
    with db.snapshot() as root:
        db.root["counts"]["a"] = 100          # committed meanwhile
        assert sum(root["counts"].values()) == 3
        with pytest.raises(eterna.ReadOnlyError):
            root["counts"]["c"] = 3
    assert sum(db.root["counts"].values()) == 102


def test_reads_agree_outside_in_a_transaction_and_in_a_snapshot(db):
    # `d[k]`, `k in d` and `len()` are answered natively inside a transaction or snapshot,
    # and by the Python layer outside one: the three must agree, errors included.
    db.root["d"] = {"s": "text", 1: [1, 2, {"x": 1}], (1, "t"): {"inner": {2, 3}},
                    "r": Frob(foo=1, bar=2), "e": {}}

    def reads(root):
        d = root["d"]
        got = [d["s"], d[1.0][2]["x"], sorted(d[(1, "t")]["inner"]), d["r"].foo, len(d),
               len(d[1]), len(d["e"]), "s" in d, "nope" in d, object() in d, 2 in d[1],
               3 in d[(1, "t")]["inner"], type(d[1]).__name__, type(d["r"]).__name__]
        with pytest.raises(TypeError, match="unhashable"):
            [1] in d
        with pytest.raises(KeyError) as e:
            d["nope"]
        assert e.value.args == ("nope",)
        with pytest.raises(TypeError, match="unhashable"):
            d[[1]]
        with pytest.raises(TypeError, match="not subscriptable"):
            d[(1, "t")]["inner"][2]
        with pytest.raises(TypeError, match="not subscriptable"):
            d["r"]["foo"]
        with pytest.raises(TypeError, match="item assignment"):
            d[(1, "t")]["inner"][2] = 1
        with pytest.raises(TypeError, match="item assignment"):
            d["r"]["foo"] = 1
        return got

    outside = reads(db.root)
    with db.transaction() as root:
        assert reads(root) == outside
    with db.snapshot() as root:
        assert reads(root) == outside
        kept = root["d"]
    assert outside == ["text", 1, [2, 3], 1, 5, 3, 0, True, False, False, True, True, "List", "Record"]
    with pytest.raises(eterna.Error, match="ended"):
        kept["s"]


def test_python_key_rules_and_order(db):
    db.root["d"] = {}
    d = db.root["d"]
    d[1] = "int"
    d[1.0] = "float"
    d[True] = "bool"
    assert len(d) == 1 and d[1] == "bool"
    for k in ["z", "a", "m"]:
        d[k] = k
    assert list(d) == [1, "z", "a", "m"]
    del d["a"]
    d["a"] = "again"
    assert list(d) == [1, "z", "m", "a"]


def test_dicts_of_str_store_like_any_dict(db):
    # A dict whose keys and values are all str is converted packed; one whose first
    # other entry comes late switches to ordinary conversion there. Both read back equal,
    # in order, with non-ASCII text, empty and long strings, and str subclasses.
    class Tag(str):
        pass

    words = {f"k{i}": "v" * (i % 40) for i in range(2000)}
    words["ключ"] = "значение ✓"
    words[Tag("sub")] = Tag("class")
    db.root["words"] = words
    mixed = dict(words)
    mixed["late"] = 7
    mixed["after"] = "str again"
    db.root["mixed"] = mixed
    assert eterna.unwrap(db.root["words"]) == words
    assert list(db.root["words"]) == list(words)
    assert eterna.unwrap(db.root["mixed"]) == mixed
    assert list(db.root["mixed"])[-3:] == ["sub", "late", "after"]
    assert type(eterna.unwrap(db.root["words"])["sub"]) is str
    before = db.stats()["blocks_live"]
    with pytest.raises(UnicodeEncodeError):
        db.root["bad"] = {"fine": "x", "lone": "\ud800"}
    assert "bad" not in db.root and db.stats()["blocks_live"] == before


def test_value_semantics_and_sharing(db):
    db.root["a"] = [1, 2]
    with db.transaction() as root:
        root["b"] = root["a"]          # stored once, by reference
        root["a"].append(3)
    assert eterna.unwrap(db.root["a"]) == [1, 2, 3]
    assert eterna.unwrap(db.root["b"]) == [1, 2]
    db.root["c"] = db.root["a"]        # across transactions: a copy
    db.root["a"].append(4)
    assert eterna.unwrap(db.root["c"]) == [1, 2, 3]


def test_mutable_mapping_api(db):
    db.root["m"] = {"a": 1}
    m = db.root["m"]
    assert m.get("a") == 1 and m.get("zz", 5) == 5
    assert m.setdefault("b", 2) == 2 and m["b"] == 2
    m.update({"c": 3}, d=4)
    assert m.pop("d") == 4
    assert dict(m.items()) == {"a": 1, "b": 2, "c": 3}
    assert list(m.keys()) == ["a", "b", "c"] and list(m.values()) == [1, 2, 3]
    assert m == {"a": 1, "b": 2, "c": 3}
    key, value = m.popitem()
    assert (key, value) in [("a", 1), ("b", 2), ("c", 3)] and len(m) == 2
    with pytest.raises(KeyError):
        m["missing"]
    with pytest.raises(KeyError):
        del m["missing"]


def test_mutable_sequence_api(db):
    db.root["l"] = [5, 3, 1, 4]
    l = db.root["l"]
    assert l[-1] == 4 and l[1:3] == [3, 1]
    l.insert(0, 9)
    l.sort()
    assert eterna.unwrap(l) == [1, 3, 4, 5, 9]
    l.reverse()
    assert eterna.unwrap(l) == [9, 5, 4, 3, 1]
    del l[1:3]
    l[0] = "first"
    l[1:2] = ["x", "y"]
    assert eterna.unwrap(l) == ["first", "x", "y", 1]
    assert l.pop() == 1 and l.index("y") == 2 and l.count("x") == 1
    l.extend([7, 8])
    assert len(l) == 5 and l == ["first", "x", "y", 7, 8]
    with pytest.raises(IndexError):
        l[10]


def test_mutable_set_api(db):
    db.root["s"] = {1, 2}
    s = db.root["s"]
    s.add(3)
    s.discard(1)
    s.discard(42)
    assert set(s) == {2, 3} and 2 in s and 1 not in s
    s |= {5}
    assert set(s) == {2, 3, 5}


def test_records_and_unwrap(db):
    db.root["p"] = Point(1, 2)
    db.root["f"] = Frob(foo=1, bar=2)
    p = db.root["p"]
    assert p.type_name == "Point" and p.x == 1
    p.y = 5
    back = eterna.unwrap(db.root["p"])
    assert isinstance(back, Point) and (back.x, back.y) == (1, 5)
    assert eterna.unwrap(db.root["f"]) == Frob(foo=1, bar=2)
    with pytest.raises(AttributeError):
        p.nope
    db.root["u"] = Detached("Under", {"_hidden": 1, "shown": 2})
    assert db.root["u"]._hidden == 1 and db.root["u"].shown == 2


def test_unsupported_values_name_type_and_place_and_write_nothing(db):
    db.root["ok"] = 1
    before = db.stats()["blocks_live"]
    with pytest.raises(TypeError, match=r'function.*\[.inner.\]\[1\]'):
        db.root["bad"] = {"inner": [1, lambda: 0]}
    assert "bad" not in db.root
    assert db.stats()["blocks_live"] == before
    with pytest.raises(TypeError, match="unhashable"):
        db.root["bad"] = {frozenset(): 1, (1, [2]): 3}


def test_cyclic_and_too_deep_values_are_refused(db):
    db.root["keep"] = 1
    cyclic = [1, 2]
    cyclic.append(cyclic)
    looped = {"a": {}}
    looped["a"]["back"] = looped
    node = Frob(foo=1, bar=None)
    node.bar = node
    for value in (cyclic, looped, node):
        with pytest.raises(ValueError, match="cyclic"):
            db.root["x"] = value
    with pytest.raises(ValueError, match=r"""cyclic.*\["x"\]\['a'\]\['back'\]"""):
        db.root["x"] = looped
    assert dict(db.root) == {"keep": 1}  # nothing was written

    shared = [1, 2]  # the same list twice is not a cycle
    db.root["dag"] = {"a": shared, "b": (shared, shared)}
    assert eterna.unwrap(db.root["dag"]) == {"a": [1, 2], "b": ([1, 2], [1, 2])}

    deep = []
    for _ in range(999):
        deep = [deep]
    db.root["deep"] = deep  # 1000 levels: stored and read back
    back, levels = eterna.unwrap(db.root["deep"]), 1
    while back:
        back, levels = back[0], levels + 1
    assert (back, levels) == ([], 1000)
    with pytest.raises(ValueError, match="deeper than 1000"):
        db.root["deeper"] = [deep]
    assert "deeper" not in db.root


def test_a_damaged_file_with_a_reference_cycle_is_an_error(tmp_path):
    path = tmp_path / "heap"
    with eterna.open(path) as db:
        db.root["n"] = Frob(foo=1, bar=2)
        with db.snapshot() as root:
            record = root["n"]._off  # a record: [ty][pad 3][n u32][name][field names][foo][bar]
    with open(path, "r+b") as f:  # point the field `bar` at the record itself
        f.seek(record + 32)
        assert int.from_bytes(f.read(8), "little") != record
        f.seek(record + 32)
        f.write(record.to_bytes(8, "little"))
    with eterna.open(path, readonly=True) as db:
        assert db.root["n"].bar.foo == 1  # one step at a time the loop is walkable
        with pytest.raises(eterna.CorruptionError, match="nested too deeply"):
            eterna.unwrap(db.root["n"])  # a whole copy reports it, not a stack overflow


def test_readonly_and_errors(tmp_path):
    path = tmp_path / "heap"
    eterna.open(path).close()
    ro = eterna.open(path, readonly=True)
    with pytest.raises(eterna.ReadOnlyError):
        ro.root["x"] = 1
    not_a_heap = tmp_path / "text"
    not_a_heap.write_text("hello")
    with pytest.raises(eterna.Error):
        eterna.open(not_a_heap, readonly=True)
    assert issubclass(eterna.CorruptionError, eterna.Error)


def test_forked_children_read_and_write(tmp_path):
    db = eterna.open(tmp_path / "heap")
    db.root["data"] = {"greeting": "hello"}    # this process holds the writer's role
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if db.root["data"]["greeting"] == "hello":
                db.root["child"] = os.getpid()   # reopens the heap in the child
                db.close()
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert db.root["child"] == pid


def run_threads(n, target):
    errors = []

    def guarded(i):
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_threads_share_the_heap_and_its_proxies(db):
    db.root["c"] = {"n": 0}
    db.root["log"] = []
    log = db.root["log"]  # a proxy from outside a transaction, used by every thread

    def work(i):
        for j in range(50):
            with db.transaction() as root:  # the writer lock serialises the threads
                root["c"]["n"] += 1
            log.append((i, j))

    assert run_threads(4, work) == []
    assert db.root["c"]["n"] == 200
    assert sorted(log) == [(i, j) for i in range(4) for j in range(50)]

    with db.snapshot() as root:  # a snapshot may be read by other threads too
        seen = []
        assert run_threads(3, lambda i: seen.append((root["c"]["n"], len(root["log"])))) == []
        assert seen == [(200, 200)] * 3


def test_a_transaction_belongs_to_its_thread(db):
    db.root["c"] = {"n": 0}
    with db.transaction() as root:
        inner = root["c"]
        inner["n"] = 1
        errors = run_threads(1, lambda i: inner.__setitem__("n", 2))
        assert len(errors) == 1 and isinstance(errors[0], eterna.Error)
        assert "thread" in str(errors[0])
        assert inner["n"] == 1  # the other thread changed nothing
    assert db.root["c"]["n"] == 1  # and the transaction committed on its own thread


def spawned_worker(path, i):
    """Runs in a fresh interpreter started with spawn: it opens the heap by path."""
    with eterna.open(path, lock_timeout=60) as db:
        with db.transaction() as root:
            root["hits"].append(i)
        return eterna.unwrap(db.root["data"])


def test_spawned_workers_open_by_path(tmp_path):
    path = str(tmp_path / "heap")
    with eterna.open(path) as db:
        db.root["data"] = {"x": [1, 2], "f": Frob(foo=9, bar=23)}
        db.root["hits"] = []
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        seen = pool.starmap(spawned_worker, [(path, i) for i in range(4)])
    assert seen == [{"x": [1, 2], "f": Frob(foo=9, bar=23)}] * 4
    with eterna.open(path, readonly=True) as db:
        assert sorted(db.root["hits"]) == [0, 1, 2, 3]


def test_a_second_writer_times_out(tmp_path):
    path = tmp_path / "heap"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import eterna, sys, time
            db = eterna.open({str(path)!r})
            with db.transaction() as root:    # holds the writer lock while it runs
                root["x"] = 1
                print("locked", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        other = eterna.open(path, lock_timeout=0.2)
        with pytest.raises(eterna.LockTimeout):
            other.root["y"] = 2
        with pytest.raises(KeyError):
            other.root["x"]              # reading never waits; the holder has not committed
    finally:
        holder.kill()
        holder.wait()
    other.root["y"] = 2                  # the dead holder's lock is gone
    assert other.root["y"] == 2


def test_stats_keys(db):
    db.root["x"] = "some text that is long enough"
    s = db.stats()
    for key in ["arenas_allocated_total", "arenas_reclaimed", "arenas_highwater", "arenas_current",
                "pools_current", "blocks_live", "bytes_live", "bytes_free", "file_bytes", "disk_bytes",
                "txn_id", "readers", "size_classes"]:
        assert key in s


def _private_dirty_kib():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    raise RuntimeError("no Private_Dirty in smaps_rollup")


def test_four_forked_readers_share_the_data(tmp_path):
    path = tmp_path / "shared"
    n = 1_000_000
    db = eterna.open(path, sync="none")
    db.root["data"] = {f"key:{i:010}": f"value number {i} " + "v" * 20 for i in range(n)}
    live = db.stats()["bytes_live"]
    assert live > 50 * 2**20, "the dataset must exceed 50 MiB"
    db.close()
    os.sync()  # unsynced page-cache pages would count as every mapper's dirty memory
    db = eterna.open(path, readonly=True)
    children = []
    for _ in range(4):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                before = _private_dirty_kib()
                total = 0
                with db.snapshot() as root:
                    data = root["data"]
                    for key in data:
                        total += len(key) + len(data[key])
                after = _private_dirty_kib()
                os.write(w, f"{total} {before} {after}".encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        children.append((pid, r))
    for pid, r in children:
        reply = os.read(r, 200)
        assert reply, "a reader process failed"
        total, before, after = map(int, reply.split())
        os.close(r)
        os.waitpid(pid, 0)
        grown = after - before
        print(f"forked reader read {total} bytes; private dirty grew {grown} KiB (to {after} KiB)")
        assert total > 50 * 10**6
        assert grown <= 5 * 1024, f"a reader copied {grown} KiB"


def test_gc_frees_shared_garbage_and_keeps_the_rest(db):
    db.root["keep"] = ["kept value number %d" % i for i in range(100)]
    with db.transaction() as root:
        root["a"] = ["shared value number %d" % i for i in range(3000)]
        root["b"] = root["a"]              # one list, stored in two places
    with db.transaction() as root:
        del root["a"]
        del root["b"]                      # a path copy never frees a shared object
    report = db.gc()
    assert report["garbage_blocks"] > 3000
    assert report["garbage_bytes"] > 3000 * 16
    assert report["shared_dropped"] == 1
    assert report["blocks_deferred"] == 0
    assert db.root["keep"][99] == "kept value number 99"
    again = db.gc()
    assert again["garbage_blocks"] == 0
    # A young collection traces only what was committed since the last collection.
    with db.transaction() as root:
        root["c"] = ["young value number %d" % i for i in range(500)]
        root["d"] = root["c"]
    with db.transaction() as root:
        del root["c"]
        del root["d"]
    young = db.gc(young=True)
    assert young["young"] and young["garbage_blocks"] > 500
    assert young["objects_traced"] < 50
    s = db.stats()
    assert s["gc_collections"] == 3 and s["gc_compactions"] == 0
    assert s["gc_bytes_freed"] >= report["garbage_bytes"]


def test_compact_gives_disk_back_while_a_snapshot_reads(tmp_path):
    db = eterna.open(tmp_path / "heap", sync="none")
    n = 100_000
    db.root["l"] = ["string number %08d" % i for i in range(n)]
    with db.transaction() as root:
        lst = root["l"]
        for i in range(n - 1, -1, -2):    # every other item: every pool half empty
            del lst[i]
    db.gc()
    before = db.stats()["disk_bytes"]
    with db.snapshot() as old:
        expect = list(old["l"])
        report = db.compact()
        assert report["compacted"] and report["moved_blocks"] >= n // 2
        assert report["blocks_deferred"] > 0          # the snapshot still reads the old blocks
        assert list(old["l"]) == expect
    assert list(db.root["l"]) == expect
    db.root["tick"] = 1                                # the next commits free the old blocks
    db.root["tick"] = 2
    after = db.stats()["disk_bytes"]
    assert after < before * 0.75, (before, after)
    db.close()
    check = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import eterna
        db = eterna.open({str(tmp_path / "heap")!r}, readonly=True)
        assert db.root["l"][0] == "string number 00000000"
        try:
            db.gc()
        except eterna.ReadOnlyError:
            print("read-only")
        """)], capture_output=True, text=True)
    assert check.stdout.strip() == "read-only", check.stderr


def test_reads_outside_a_transaction_see_the_last_commit_while_another_thread_writes(db):
    db.root["k"] = 1  # this process now holds the writer's role: such reads skip snapshots
    begun, release = threading.Event(), threading.Event()

    def writer(_):
        with db.transaction() as root:
            root["k"] = 2
            begun.set()
            assert release.wait(10)

    t = threading.Thread(target=writer, args=(0,))
    t.start()
    assert begun.wait(10)
    try:
        # The other thread's transaction holds the writer: this read takes a snapshot
        # instead of waiting, and sees the last commit, not the running transaction.
        assert db.root["k"] == 1
        assert "k" in db.root and len(db.root) >= 1
    finally:
        release.set()
        t.join()
    assert db.root["k"] == 2


# ----- found by an audit: fork, turns, nesting, atomic bulk changes, copies ---------------

def test_a_transaction_open_across_fork_is_the_parents_alone(tmp_path):
    db = eterna.open(tmp_path / "heap")
    db.root["items"] = []
    with db.transaction() as r:
        r["items"] = [f"parent {i}" for i in range(2000)]
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                try:
                    r["items"] = ["child"]
                except eterna.Error as e:
                    code = 0 if "fork" in str(e) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert eterna.unwrap(db.root["items"]) == [f"parent {i}" for i in range(2000)]
    db.close()
    with eterna.open(tmp_path / "heap", readonly=True) as ro:
        assert ro.check()["unreachable_blocks"] == 0


def test_a_child_forked_after_a_write_writes_while_the_parent_keeps_the_heap(tmp_path):
    db = eterna.open(tmp_path / "heap", lock_timeout=20)
    db.root["parent"] = 1                  # the parent holds the writer's role, and keeps the heap
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            db.root["child"] = 2           # the parent hands the role over
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    db.root["parent"] = 3                  # and takes it back
    assert eterna.unwrap(db.root) == {"parent": 3, "child": 2}
    db.close()


def test_two_processes_that_keep_the_heap_open_take_turns_writing(tmp_path):
    path = tmp_path / "heap"
    other = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import eterna, sys
            db = eterna.open({str(path)!r}, lock_timeout=20)
            for line in sys.stdin:           # one write per line, the heap open throughout
                db.root[line.strip()] = "other"
                print("wrote", flush=True)
            db.close()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        db = eterna.open(path, lock_timeout=20)
        for i in range(5):
            db.root[f"mine {i}"] = "me"
            other.stdin.write(f"theirs {i}\n")
            other.stdin.flush()
            assert other.stdout.readline().strip() == "wrote"
        other.stdin.close()
        assert other.wait(30) == 0
        assert sorted(eterna.unwrap(db.root)) == sorted([f"mine {i}" for i in range(5)] + [f"theirs {i}" for i in range(5)])
        db.close()
    finally:
        other.kill()
        other.wait()


def test_a_nested_write_in_the_same_thread_is_an_error_not_a_hang(db):
    with db.transaction() as root:
        root["x"] = 1
        with pytest.raises(eterna.Error, match="already in a write transaction"):
            db.root["y"] = 2
        with pytest.raises(eterna.Error, match="already in a write transaction"):
            with db.transaction():
                pass
        with pytest.raises(eterna.Error, match="already in a write transaction"):
            db.gc()
        with pytest.raises(eterna.Error, match="already in a write transaction"):
            db.close()
        assert "blocks_live" in db.stats()
    assert eterna.unwrap(db.root) == {"x": 1}


def test_set_operators_return_plain_sets_and_in_place_ones_are_one_transaction(db):
    db.root["s"] = {1, 2, 3}
    s = db.root["s"]
    assert s | {9} == {1, 2, 3, 9} and isinstance(s | {9}, set)
    assert {9} | s == {1, 2, 3, 9}
    assert s & {2, 3, 4} == {2, 3} and s - {1} == {2, 3} and s ^ {3, 4} == {1, 2, 4}
    before = db.stats()["txn_id"]
    s |= {4, 5, 6}
    s -= {1}
    assert db.stats()["txn_id"] == before + 2
    assert set(db.root["s"]) == {2, 3, 4, 5, 6}
    s.clear()
    assert len(db.root["s"]) == 0


def test_bulk_changes_outside_a_transaction_are_all_or_nothing(db):
    db.root["d"] = {"a": 1}
    d = db.root["d"]
    with pytest.raises(TypeError, match="lambda|function"):
        d.update({"p": 1, "q": lambda: 0})
    assert eterna.unwrap(d) == {"a": 1}
    before = db.stats()["txn_id"]
    d.update({f"k{i}": i for i in range(100)})
    d.clear()
    assert db.stats()["txn_id"] == before + 2 and len(d) == 0
    db.root["l"] = list(range(50))
    before = db.stats()["txn_id"]
    db.root["l"].clear()
    assert db.stats()["txn_id"] == before + 1 and len(db.root["l"]) == 0
    assert d.setdefault("n", [1]) == [1]                      # inserted: the default itself
    got = d.setdefault("n", [2])
    assert isinstance(got, eterna.List) and list(got) == [1]   # a proxy of the latest state


def test_values_holding_a_proxy_of_the_same_transaction_store_a_copy(db):
    db.root["a"] = {"x": [1, 2]}
    db.root["L"] = []
    with db.transaction() as r:
        r["L"].append(r["a"])
        r["L"].extend(r["L"])
        r["c"] = [r["a"], {"k": r["a"]["x"]}]
    assert eterna.unwrap(db.root["L"]) == [{"x": [1, 2]}, {"x": [1, 2]}]
    assert eterna.unwrap(db.root["c"]) == [{"x": [1, 2]}, {"k": [1, 2]}]
    db.root["a"]["x"].append(3)
    assert eterna.unwrap(db.root["c"]) == [{"x": [1, 2]}, {"k": [1, 2]}]


@dataclasses.dataclass
class WithDerived:
    a: int
    b: int = dataclasses.field(init=False, default=0)

    def __post_init__(self):
        self.b = self.a * 2


class Slotted:
    __slots__ = ("u", "v")

    def __init__(self, u, v):
        self.u, self.v = u, v

    def __eq__(self, other):
        return type(other) is Slotted and (self.u, self.v) == (other.u, other.v)


eterna.register(WithDerived)
eterna.register(Slotted)


def test_records_in_tuples_and_unusual_registered_classes_come_back(db):
    w = WithDerived(a=5)
    w.b = 99                                   # not what __post_init__ would compute
    db.root["t"] = (Frob(foo=1, bar=2), Slotted(1, "x"), w, 7)
    t = db.root["t"]
    assert isinstance(t, tuple) and t[0] == Frob(foo=1, bar=2) and t[1] == Slotted(1, "x")
    assert t[2].a == 5 and t[2].b == 99 and t[3] == 7
    assert eterna.unwrap(db.root["t"]) == t
    db.root["again"] = t                       # what came back stores again
    assert db.root["again"][1] == Slotted(1, "x")
    back = eterna.unwrap(db.root["t"])[2]
    assert (back.a, back.b) == (5, 99)


def test_proxies_copy_detached_and_refuse_pickling(db):
    import copy
    import pickle
    db.root["d"] = {"x": [1]}
    d = db.root["d"]
    for c in (copy.copy(d), copy.deepcopy(d), d.copy()):
        assert c == {"x": [1]} and type(c) is dict
        c["x"].append(2)
    assert eterna.unwrap(d) == {"x": [1]}
    with pytest.raises(TypeError, match="unwrap"):
        pickle.dumps(d)


def test_a_closed_database_refuses_use(tmp_path):
    db = eterna.open(tmp_path / "heap")
    db.root["x"] = 1
    d = db.root
    db.close()
    db.close()                                 # closing twice does nothing
    with pytest.raises(eterna.Error, match="closed"):
        db.root["x"]
    with pytest.raises(eterna.Error, match="closed"):
        d["y"] = 2
    with eterna.open(tmp_path / "heap") as again:
        assert eterna.unwrap(again.root) == {"x": 1}


def test_key_errors_say_what_is_wrong(db):
    db.root["d"] = {}
    with pytest.raises(TypeError, match="unhashable type: 'list'"):
        db.root["d"][[1]] = 1
    with pytest.raises(TypeError, match="'object' cannot be used as a key"):
        db.root["d"][object()] = 1
    assert type(db._db).__module__ == "eterna._eterna"
    assert eterna.ReadOnlyError.__module__ == "eterna"


def test_a_proxy_whose_container_is_gone_names_the_container_not_the_member(db):
    db.root["x"] = {"a": 1, "l": [1, 2], "s": {1}, "r": Frob(foo=1, bar=2)}
    d = db.root["x"]
    lst, s, r = d["l"], d["s"], d["r"]
    # While the container exists, a missing member is Python's own error.
    with pytest.raises(KeyError) as e:
        d["zz"]
    assert e.value.args == ("zz",)
    with pytest.raises(IndexError, match="list index out of range"):
        lst[9]
    with pytest.raises(AttributeError, match="no field 'zz'"):
        r.zz
    del db.root["x"]
    gone = 'root\\["x"\\] not found'
    for op in (
        lambda: d["a"],
        lambda: len(d),
        lambda: "a" in d,
        lambda: d.pop("a", None),
        lambda: d.__delitem__("a"),
        lambda: d.__setitem__("b", 2),
        lambda: lst[0],
        lambda: lst.append(3),
        lambda: s.discard(1),
        lambda: r.foo,
    ):
        with pytest.raises(KeyError, match=gone):
            op()
    with db.transaction():
        with pytest.raises(KeyError, match=gone):
            d["a"]
        with pytest.raises(KeyError, match=gone):
            lst[0]
    assert "x" not in db.root
    db.check()


def test_extended_slices_sort_with_a_key_and_the_sync_modes(tmp_path):
    for sync in ("commit", "full", "none"):
        with eterna.open(tmp_path / f"heap-{sync}", sync=sync) as db:
            db.root["l"] = list(range(10))
            l = db.root["l"]
            model = list(range(10))
            l[::3] = ["a", "b", "c", "d"]
            model[::3] = ["a", "b", "c", "d"]
            with pytest.raises(ValueError):
                l[::2] = [1, 2]                     # wrong length, as list raises
            del l[8:1:-2]
            del model[8:1:-2]
            assert eterna.unwrap(l) == model and l[::-1] == model[::-1]
            l.sort(key=str, reverse=True)
            model.sort(key=str, reverse=True)
            assert eterna.unwrap(l) == model
        with eterna.open(tmp_path / f"heap-{sync}", readonly=True) as db:
            assert eterna.unwrap(db.root["l"]) == model


def test_proxies_of_an_ended_transaction_or_snapshot_refuse_use(db):
    db.root["d"] = {"x": 1}
    with db.transaction() as root:
        kept_txn = root["d"]
    with db.snapshot() as root:
        kept_snap = root["d"]
    with pytest.raises(eterna.Error, match="ended"):
        kept_txn["x"]
    with pytest.raises(eterna.Error, match="ended"):
        kept_txn["y"] = 2
    with pytest.raises(eterna.Error, match="ended"):
        len(kept_snap)
    assert eterna.unwrap(db.root["d"]) == {"x": 1}


def test_an_unregistered_record_comes_back_detached(tmp_path):
    path = tmp_path / "heap"
    with eterna.open(path) as db:
        db.root["r"] = Frob(foo=1, bar=2)
    # A new process that never registered (nor defined) Frob.
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import eterna
            with eterna.open({str(path)!r}, readonly=True) as db:
                r = eterna.unwrap(db.root["r"])
                print(type(r).__name__, r.type_name, r.foo, r.bar, repr(r))
        """)],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.split()[:4] == ["Detached", "Frob", "1", "2"]
    assert "Frob(foo=1, bar=2)" in out.stdout
