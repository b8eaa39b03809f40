"""eterna: an embedded object heap in a memory-mapped file.

Python values (None, bool, int, float, str, bytes, tuple, list, dict, set, frozenset,
dataclasses and registered classes) live in the file natively; any number of processes
read them without copies; one writer at a time commits atomic transactions.

    import eterna
    db = eterna.open("data.eterna")
    db.root["k"] = {"a": [1, 2.5, "x"], "b": b"raw"}    # one committed transaction
    db.root["k"]["a"].append(3)                         # another one
    with db.transaction() as root:                      # all or nothing
        root["x"] = {"n": 1}
    with db.snapshot() as root:                         # a consistent read-only view
        print(root["k"]["a"][-1])

Containers come back as live proxies (`Dict`, `List`, `Set`, `Record`); scalars, tuples
and frozensets as plain Python objects. Outside a `with` block, every access reads the
latest committed state and every change is its own transaction.

Threads may share a database, proxies from outside a `with` block, and snapshots; write
transactions of different threads take turns. A transaction and its proxies belong to the
thread that began it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import weakref
from collections.abc import Iterator, MutableMapping, MutableSequence, MutableSet
from typing import Any

from . import _eterna
from ._eterna import CorruptionError, Error, LockTimeout, ReadOnlyError

__all__ = [
    "open",
    "Database",
    "Dict",
    "List",
    "Set",
    "Record",
    "Detached",
    "register",
    "unwrap",
    "Error",
    "CorruptionError",
    "LockTimeout",
    "ReadOnlyError",
]

_classes: dict[str, type] = {}  # registered record types by name
_names: dict[type, str] = {}  # and their names by class


def register(cls: type, name: str | None = None) -> type:
    """Lets instances of `cls` be stored as records (its instance attributes are the
    fields) and rebuilt by `unwrap`. Usable as a decorator. Dataclasses are stored without
    registering; registering them lets `unwrap` rebuild them."""
    n = name or cls.__qualname__
    _classes[n] = cls
    _names[cls] = n
    return cls


class Detached:
    """A record read back by `unwrap` whose type was not registered: its type name and
    fields, as attributes."""

    def __init__(self, type_name: str, fields: dict[str, Any]):
        self.__dict__.update(fields)
        self.__dict__["type_name"] = type_name

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if k != "type_name")
        return f"{self.type_name}({fields})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Detached) and self.__dict__ == other.__dict__


def _plain(obj: Any) -> Any:
    """What to store for a value the native layer does not know: a proxy's contents, a
    record as (type name, [(field, value)]), or None (unsupported)."""
    if isinstance(obj, _Proxy):
        return obj._unwrap()
    if isinstance(obj, Detached):
        return (obj.type_name, [(k, v) for k, v in obj.__dict__.items() if k != "type_name"])
    cls = type(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return (_names.get(cls, cls.__qualname__), [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)])
    if cls in _names:
        return (_names[cls], _attributes(obj))
    return None


def _attributes(obj: Any) -> list[tuple[str, Any]]:
    """The instance attributes of `obj`: its `__dict__` and any `__slots__` it fills."""
    items = list(getattr(obj, "__dict__", {}).items())
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                items.append((name, getattr(obj, name)))
    return items


def _build(type_name: str, fields: list[tuple[str, Any]]) -> Any:
    """Rebuilds a record read back by `unwrap`: into its registered class (without running
    its `__init__`: its fields are set as they were stored, frozen dataclasses and
    `__slots__` included), else `Detached`."""
    cls = _classes.get(type_name)
    if cls is None:
        return Detached(type_name, dict(fields))
    obj = cls.__new__(cls)
    for name, value in fields:
        object.__setattr__(obj, name, value)
    return obj


def unwrap(value: Any) -> Any:
    """A detached deep copy of a proxy (registered classes rebuilt); any other value as it is."""
    return value._unwrap() if isinstance(value, _Proxy) else value


class _Proxy(_eterna.Proxy):
    """A container in the heap. The native base holds its database (`_db`), the transaction
    or snapshot it belongs to (`_h`; None: each access uses its own), its path from the
    root (`_path`), and in a snapshot its offset (`_off`: a snapshot's containers never
    move, so lookups need not walk the path). It also answers `d[k]`, `k in d` and `len()`
    inside a transaction or snapshot in one native call; the methods `_getitem`,
    `_contains` and `_len` here do the rest."""

    __slots__ = ()

    def _read(self, fn, one=False):
        """Runs `fn` on this proxy's handle, or outside a transaction on a snapshot. With
        `one` (a single small read), when this process already writes and no other thread
        is in a transaction, it reads through the writer's view of the last commit instead
        (no snapshot to pin; the write-through expression `db.root["k"][x] = v` reads
        `db.root["k"]` this way)."""
        if self._h is not None:
            return fn(self._h)
        native = self._db._native()
        h = native.latest() if one else native.read()
        try:
            return fn(h)
        finally:
            h.end()

    def _write(self, fn):
        h = self._h
        if h is not None:
            if isinstance(h, _eterna.Snap):
                raise ReadOnlyError("a snapshot is read-only; change the data in db.transaction()")
            return fn(h)
        txn = self._db._native().write()
        try:
            result = fn(txn)
        except BaseException:
            txn.abort()
            raise
        txn.commit()
        return result

    def _wrap(self, value: Any, key: Any) -> Any:
        if isinstance(value, _eterna.Nested):
            off = value.offset if self._off is not None else None
            return _KINDS[value.kind](self._db, self._h, self._path + (key,), off)
        return value

    def _store(self, key: Any, value: Any) -> None:
        path = self._path + (key,)
        h = self._h
        if type(h) is _eterna.Txn and not isinstance(value, _Proxy):
            h.set(path, value, _plain)  # the common case, without building a closure
            return

        def op(h):
            # A proxy of this very transaction is stored by reference (structural sharing).
            if isinstance(value, _Proxy) and value._h is h and h is not None:
                h.share(path, value._path)
            else:
                h.set(path, value, _plain)

        self._write(op)

    def _unwrap(self) -> Any:
        return self._read(lambda h: h.unwrap(self._path, _build))

    def _atomically(self, fn):
        """Runs `fn` on this container as one transaction: the running one, or outside a
        `with` block a new one, committed when `fn` returns and rolled back if it raises."""
        if self._h is not None:
            if isinstance(self._h, _eterna.Snap):
                raise ReadOnlyError("a snapshot is read-only; change the data in db.transaction()")
            return fn(self)
        def run(h):
            result = fn(type(self)(self._db, h, self._path))
            if isinstance(result, _Proxy) and result._h is h:
                # A container read in the transaction: outside it, a proxy of the latest state.
                result = type(result)(self._db, None, result._path)
            return result
        return self._write(run)

    def copy(self) -> Any:
        """A detached copy (a plain dict, list or set; records rebuilt as `unwrap` does)."""
        return self._unwrap()

    def __copy__(self) -> Any:
        return self._unwrap()

    def __deepcopy__(self, memo: dict) -> Any:
        return self._unwrap()

    def __reduce__(self):
        raise TypeError(
            f"cannot pickle an eterna.{type(self).__name__}: it is a view of a heap file; "
            "pickle eterna.unwrap(value) for a detached copy"
        )

    def _len(self) -> int:
        return self._read(lambda h: h.len(self._path), one=True)

    def _gone(self, h=None) -> None:
        """Raises KeyError naming this proxy's path when its container (or one above it) no
        longer exists; called before a missing member is reported as KeyError, IndexError
        or AttributeError, which would otherwise blame the member. Reads through `h` when
        given (inside a write of this proxy's own)."""
        if h is not None:
            h.len(self._path)
        else:
            self._len()

    def _contains(self, key: object) -> bool:
        return self._read(lambda h: h.contains(self._path, key), one=True)

    def __repr__(self) -> str:
        return f"eterna.{type(self).__name__}({self._unwrap()!r})"


class Dict(_Proxy, MutableMapping):
    """A dict in the heap; insertion-ordered; `1`, `1.0` and `True` are one key."""

    __slots__ = ()

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    _missing = object()

    def pop(self, key: Any, default: Any = _missing) -> Any:
        """Removes `key` and returns its value, detached (the entry no longer exists)."""
        def op(h):
            try:
                value = h.unwrap(self._path + (key,), _build)
            except KeyError:
                self._gone(h)
                if default is Dict._missing:
                    raise KeyError(key) from None
                return default
            h.delete(self._path + (key,))
            return value
        return self._write(op)

    def popitem(self) -> tuple:
        """Removes and returns the last inserted (key, value), the value detached."""
        def op(h):
            keys = h.members(self._path)
            if not keys:
                raise KeyError("popitem(): dictionary is empty")
            key = keys[-1]
            value = h.unwrap(self._path + (key,), _build)
            h.delete(self._path + (key,))
            return key, value
        return self._write(op)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """`dict.update`, as one transaction."""
        self._atomically(lambda d: MutableMapping.update(d, other, **kwargs))

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """`dict.setdefault`, as one transaction."""
        return self._atomically(lambda d: MutableMapping.setdefault(d, key, default))

    def clear(self) -> None:
        """Removes every entry, as one transaction."""
        self._atomically(lambda d: d._h.set(d._path, {}, _plain))

    def _getitem(self, key: Any) -> Any:
        # `d[key]` outside a transaction or snapshot (the native base answers inside one).
        try:
            return self._wrap(self._read(lambda h: h.get(self._path + (key,)), one=True), key)
        except KeyError:
            self._gone()
            raise KeyError(key) from None

    def _setitem(self, key: Any, value: Any) -> None:
        # `d[key] = value` (the native base stores most values inside a transaction itself).
        self._store(key, value)

    def _delitem(self, key: Any) -> None:
        try:
            self._write(lambda h: h.delete(self._path + (key,)))
        except KeyError:
            self._gone()
            raise KeyError(key) from None

    def __iter__(self) -> Iterator:
        if self._off is not None:
            return _chunks(self._h, self._off)
        return iter(self._read(lambda h: h.members(self._path)))



def _chunks(handle: Any, off: int, size: int = 4096) -> Iterator:
    """The members of a snapshot's container, fetched a chunk at a time (a reader of a
    large dict never copies it whole)."""
    start = 0
    while True:
        items, start = handle.chunk_in(off, start, size)
        if not items:
            return
        yield from items


class List(_Proxy, MutableSequence):
    """A list in the heap (a counted B-tree: any insert or delete copies one path)."""

    __slots__ = ()
    __contains__ = MutableSequence.__contains__  # not the native base's (a dict's)

    def _index(self, i: int, n: int) -> int:
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError("list index out of range")
        return j

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            items = self._read(lambda h: h.unwrap(self._path, _build))
            return items[i]
        if self._off is not None:
            try:
                return self._wrap(self._h.get_in(self._off, i), i)
            except KeyError:
                raise IndexError("list index out of range") from None
        try:
            return self._wrap(self._read(lambda h: h.get(self._path + (i,)), one=True), i)
        except KeyError:
            self._gone()
            raise IndexError("list index out of range") from None

    def __setitem__(self, i: Any, value: Any) -> None:
        if isinstance(i, slice):
            def op(h):
                n = h.len(self._path)
                start, stop, step = i.indices(n)
                if step != 1:
                    items = h.unwrap(self._path, _build)
                    items[i] = value
                    h.splice(self._path, 0, n, list(items), _plain)
                else:
                    h.splice(self._path, start, max(stop - start, 0), list(value), _plain)
            self._write(op)
            return
        def op(h):
            self._index(i, h.len(self._path))
            if isinstance(value, _Proxy) and value._h is h:
                h.share(self._path + (i,), value._path)
            else:
                h.set(self._path + (i,), value, _plain)
        self._write(op)

    def __delitem__(self, i: Any) -> None:
        def op(h):
            n = h.len(self._path)
            if isinstance(i, slice):
                start, stop, step = i.indices(n)
                if step == 1:
                    h.splice(self._path, start, max(stop - start, 0), [], _plain)
                else:
                    for j in sorted(range(start, stop, step), reverse=True):
                        h.delete(self._path + (j,))
            else:
                h.delete(self._path + (self._index(i, n),))
        self._write(op)

    def pop(self, i: int = -1) -> Any:
        """Removes item `i` and returns it, detached (it is no longer in the list)."""
        def op(h):
            j = self._index(i, h.len(self._path))
            value = h.unwrap(self._path + (j,), _build)
            h.delete(self._path + (j,))
            return value
        return self._write(op)

    def insert(self, i: int, value: Any) -> None:
        def op(h):
            n = h.len(self._path)
            j = max(0, min(n, i + n if i < 0 else i))
            h.splice(self._path, j, 0, [value], _plain)
        self._write(op)

    def append(self, value: Any) -> None:
        self._write(lambda h: h.splice(self._path, h.len(self._path), 0, [value], _plain))

    def extend(self, values: Any) -> None:
        values = list(values)
        self._write(lambda h: h.splice(self._path, h.len(self._path), 0, values, _plain))

    def __iadd__(self, values: Any) -> List:
        self.extend(values)
        return self

    def clear(self) -> None:
        """Removes every item, as one transaction."""
        self._write(lambda h: h.splice(self._path, 0, h.len(self._path), [], _plain))

    def remove(self, value: Any) -> None:
        """`list.remove`, as one transaction."""
        self._atomically(lambda l: MutableSequence.remove(l, value))

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        def op(h):
            items = h.unwrap(self._path, _build)
            items.sort(key=key, reverse=reverse)
            h.splice(self._path, 0, len(items), items, _plain)
        self._write(op)

    def reverse(self) -> None:
        def op(h):
            items = h.unwrap(self._path, _build)
            h.splice(self._path, 0, len(items), items[::-1], _plain)
        self._write(op)

    def __iter__(self) -> Iterator:
        if self._off is not None:
            return (self._wrap(v, j) for j, v in enumerate(_chunks(self._h, self._off)))
        items = self._read(lambda h: h.members(self._path))
        return (self._wrap(v, j) for j, v in enumerate(items))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, List):
            other = other._unwrap()
        return isinstance(other, list) and self._unwrap() == other


class Set(_Proxy, MutableSet):
    """A set in the heap."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        raise TypeError("'Set' object is not subscriptable")

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("'Set' object does not support item assignment")

    def __delitem__(self, key: Any) -> None:
        raise TypeError("'Set' object does not support item deletion")

    def __iter__(self) -> Iterator:
        return iter(self._read(lambda h: h.members(self._path)))

    @classmethod
    def _from_iterable(cls, items: Any) -> set:
        # What `s | t`, `s & t`, `s - t` and `s ^ t` return: a plain set.
        return set(items)

    def add(self, key: Any) -> None:
        self._write(lambda h: h.add(self._path, key))

    def clear(self) -> None:
        """Removes every element, as one transaction."""
        self._write(lambda h: h.set(self._path, set(), _plain))

    def _in_place(op):  # noqa: N805 (a helper of the class body, not a method)
        def method(self, other: Any) -> Set:
            self._atomically(lambda s: op(s, other))  # |=, &=, ^=, -=: one transaction
            return self
        method.__name__ = op.__name__
        return method

    __ior__ = _in_place(MutableSet.__ior__)
    __iand__ = _in_place(MutableSet.__iand__)
    __ixor__ = _in_place(MutableSet.__ixor__)
    __isub__ = _in_place(MutableSet.__isub__)
    del _in_place

    def discard(self, key: Any) -> None:
        def op(h):
            try:
                h.delete(self._path + (key,))
            except KeyError:
                self._gone(h)
        self._write(op)


class Record(_Proxy):
    """A record in the heap: a type name and named fields, read and set as attributes."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        raise TypeError("'Record' object is not subscriptable; read fields as attributes")

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("'Record' object does not support item assignment; set fields as attributes")

    def __delitem__(self, key: Any) -> None:
        raise TypeError("'Record' object does not support item deletion")

    def __contains__(self, key: Any) -> bool:
        raise TypeError("'Record' object is not a container; read fields as attributes")

    @property
    def type_name(self) -> str:
        return self._read(lambda h: h.type_name(self._path), one=True)

    def __getattr__(self, name: str) -> Any:
        # Dunder names are Python's protocols (copy, pickle, ...) probing the object, never
        # fields; `_x` fields are read like any other.
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if self._off is not None:
            try:
                return self._wrap(self._h.get_in(self._off, name), name)
            except KeyError:
                raise AttributeError(f"record {self.type_name!r} has no field {name!r}") from None
        try:
            return self._wrap(self._read(lambda h: h.get(self._path + (name,)), one=True), name)
        except KeyError:
            self._gone()
            raise AttributeError(f"record {self.type_name!r} has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            self._store(name, value)
        except KeyError:
            self._gone()
            raise AttributeError(f"record {self.type_name!r} has no field {name!r}") from None

    def fields(self) -> list[str]:
        return self._read(lambda h: h.members(self._path))

    def __eq__(self, other: object) -> bool:
        mine = self._unwrap()
        return mine == (other._unwrap() if isinstance(other, Record) else other)

    def __repr__(self) -> str:
        return f"eterna.Record({self._unwrap()!r})"


_KINDS = {"dict": Dict, "list": List, "set": Set, "record": Record}
_eterna._register_proxies(Dict, List, Set, Record, _build, _plain)


class Database:
    """An open heap file. Use `eterna.open`."""

    def __init__(self, path: str | os.PathLike, readonly: bool = False, sync: str = "commit",
                 lock_timeout: float | None = None):
        self.path = os.fspath(path)
        self._args = (readonly, sync, lock_timeout)
        self._pid = os.getpid()
        self._closed = False
        self._db = _eterna.Db(self.path, readonly, sync, lock_timeout)
        _open_databases.add(self)

    def _native(self) -> Any:
        if self._closed:
            raise Error(f"the database {self.path!r} is closed")
        # A child forked after open reopens the heap by path: it gets a reader slot and,
        # for writes, the writer lock of its own.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._db = _eterna.Db(self.path, *self._args)
        return self._db

    def _forked(self) -> None:
        # In a child right after fork: let go of the parent's writer lock at once (a child
        # that kept it would stop every other process from writing for as long as it
        # lives); the heap is reopened here at its next use.
        if not self._closed and os.getpid() != self._pid:
            self._db.after_fork()

    @property
    def root(self) -> Dict:
        """The root dict; every access outside a `with` block is its own transaction."""
        return Dict(self, None, ())

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Dict]:
        """A write transaction: committed at the end of the block, rolled back if it raises."""
        txn = self._native().write()
        try:
            yield Dict(self, txn, ())
        except BaseException:
            txn.abort()
            raise
        txn.commit()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Dict]:
        """A consistent read-only view of the last committed state."""
        snap = self._native().read()
        try:
            yield Dict(self, snap, (), snap.root_offset())
        finally:
            snap.end()

    def stats(self) -> dict:
        """The counters of `eterna stats --json`."""
        return self._native().stats()

    def gc(self, young: bool = False) -> dict:
        """Frees every block the current state does not reach (objects stored in two places
        and dropped from both, what a dead writer left). Snapshots of older states keep
        what they read; their blocks are freed once they end. Returns what was found
        (`garbage_blocks`, `garbage_bytes`, `disk_before`, `disk_after`, ...). Runs without
        the GIL, as one committed transaction. With `young=True`, traces and frees only
        what this process committed since its last collection (cheap on a large old heap)."""
        return self._native().collect("young" if young else "full")

    def compact(self) -> dict:
        """A collection that also rewrites sparsely used pools and lists densely as a new
        version, giving their pages back once no snapshot reads the old one. Returns what
        was done (`moved_blocks`, `moved_bytes`, `pools_evacuated`, `disk_after`, ...)."""
        return self._native().collect("compact")

    def check(self) -> dict:
        """`eterna check`: walks every object the committed state reaches and the side
        metadata, writing nothing. Returns what it found (`objects`, `bytes`,
        `unreachable_blocks`, ...); raises `CorruptionError` if the file is inconsistent."""
        return self._native().check()

    def close(self) -> None:
        """Publishes a clean state and releases the writer lock. Using the database (or its
        proxies) afterwards raises `eterna.Error`; closing again does nothing."""
        if self._closed:
            return
        self._native().close()
        self._closed = True
        _open_databases.discard(self)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_open_databases: weakref.WeakSet[Database] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for db in list(_open_databases):
        db._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def open(path: str | os.PathLike, readonly: bool = False, sync: str = "commit",
         lock_timeout: float | None = None) -> Database:
    """Opens (creating it unless `readonly`) the heap at `path`. `sync`: "commit" (one
    fdatasync per commit), "full" (two) or "none" (survives a process crash, not a power
    cut). `lock_timeout`: seconds to wait for another process's writer lock."""
    return Database(path, readonly, sync, lock_timeout)
