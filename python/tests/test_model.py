"""Random operation sequences on the heap's dicts and lists, checked against Python's own
dict and list after every step, inside and outside transactions (hypothesis)."""

import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eterna

keys = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.booleans(), st.none(), st.floats(-2, 2).filter(lambda f: f == int(f)))
leaves = st.one_of(st.integers(), st.text(max_size=12), st.binary(max_size=12), st.floats(allow_nan=False), st.none())
values = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=4)), max_leaves=8)

dict_ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, values),
        st.tuples(st.just("del"), keys),
        st.tuples(st.just("pop"), keys),
        st.tuples(st.just("setdefault"), keys, values),
    ),
    max_size=30,
)

list_ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), leaves),
        st.tuples(st.just("insert"), st.integers(-8, 8), leaves),
        st.tuples(st.just("setitem"), st.integers(-8, 8), leaves),
        st.tuples(st.just("delitem"), st.integers(-8, 8)),
        st.tuples(st.just("pop"), st.integers(-8, 8)),
        st.tuples(st.just("slice"), st.integers(-8, 8), st.integers(-8, 8), st.lists(leaves, max_size=3)),
        st.tuples(st.just("reverse")),
    ),
    max_size=30,
)


def apply_dict(target, op):
    kind = op[0]
    if kind == "set":
        target[op[1]] = op[2]
    elif kind == "del":
        del target[op[1]]
    elif kind == "pop":
        return target.pop(op[1])
    elif kind == "setdefault":
        got = target.setdefault(op[1], op[2])
        return eterna.unwrap(got)


def apply_list(target, op):
    kind = op[0]
    if kind == "append":
        target.append(op[1])
    elif kind == "insert":
        target.insert(op[1], op[2])
    elif kind == "setitem":
        target[op[1]] = op[2]
    elif kind == "delitem":
        del target[op[1]]
    elif kind == "pop":
        return target.pop(op[1])
    elif kind == "slice":
        target[op[1]:op[2]] = op[3]
    elif kind == "reverse":
        target.reverse()


def outcome(fn, target, op):
    try:
        return ("ok", fn(target, op))
    except (KeyError, IndexError) as e:
        return ("error", type(e))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=dict_ops, in_txn=st.booleans())
def test_dict_matches_python(ops, in_txn):
    with tempfile.TemporaryDirectory() as d:
        db = eterna.open(f"{d}/heap", sync="none")
        db.root["d"] = {}
        model = {}
        if in_txn:
            with db.transaction() as root:
                for op in ops:
                    assert outcome(apply_dict, root["d"], op) == outcome(apply_dict, model, op)
                    assert eterna.unwrap(root["d"]) == model
        else:
            for op in ops:
                assert outcome(apply_dict, db.root["d"], op) == outcome(apply_dict, model, op)
        assert eterna.unwrap(db.root["d"]) == model
        assert list(db.root["d"]) == list(model)
        db.close()


@settings(max_examples=60, deadline=None)
@given(start=st.lists(leaves, max_size=40), ops=list_ops, in_txn=st.booleans())
def test_list_matches_python(start, ops, in_txn):
    with tempfile.TemporaryDirectory() as d:
        db = eterna.open(f"{d}/heap", sync="none")
        db.root["l"] = list(start)
        model = list(start)
        if in_txn:
            with db.transaction() as root:
                for op in ops:
                    assert outcome(apply_list, root["l"], op) == outcome(apply_list, model, op)
        else:
            for op in ops:
                assert outcome(apply_list, db.root["l"], op) == outcome(apply_list, model, op)
        assert eterna.unwrap(db.root["l"]) == model
        with db.snapshot() as root:
            assert list(root["l"]) == model
        db.close()
