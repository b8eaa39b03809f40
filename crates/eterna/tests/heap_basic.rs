//! The heap end to end on a real file: store values of every type, commit, read them back
//! from a snapshot and after reopening; aborts leave nothing; snapshots are isolated.

use eterna::{Heap, Input, Key, Options, Value};

fn s(v: &str) -> Input {
    Input::Str(v.to_string())
}

fn k(v: &str) -> Key<'static> {
    Key::Str(v.to_string().into())
}

fn text(v: Option<Value<'_>>) -> String {
    match v {
        Some(Value::Str(s)) => s.as_str().to_string(),
        other => panic!("expected a str, got {other:?}"),
    }
}

#[test]
fn every_type_round_trips_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let heap = Heap::open(&path, Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    let big = {
        let mut b = vec![0u8; 20];
        b[19] = 0x40;
        b
    };
    let value = Input::Dict(vec![
        (s("none"), Input::None),
        (s("t"), Input::Bool(true)),
        (s("small"), Input::Int(-42)),
        (s("i64"), Input::Int(i64::MAX)),
        (s("big"), Input::BigInt(big.clone())),
        (s("f"), Input::Float(2.5)),
        (s("f2"), Input::Float(0.1)),
        (s("nan"), Input::Float(f64::NAN)),
        (s("short"), s("hi")),
        (s("long"), s("a string longer than seven bytes, with ünïcödé")),
        (s("bytes"), Input::Bytes(b"\x00\x01raw bytes here".to_vec())),
        (s("tuple"), Input::Tuple(vec![Input::Int(1), s("x")])),
        (s("list"), Input::List((0..100).map(Input::Int).collect())),
        (s("set"), Input::Set(vec![Input::Int(1), Input::Float(1.0), Input::Bool(true), s("one")])),
        (s("frozen"), Input::FrozenSet(vec![Input::Int(3)])),
        (
            s("rec"),
            Input::Record {
                type_name: "Frob".into(),
                fields: vec![("foo".into(), Input::Int(9)), ("bar".into(), Input::Int(23))],
            },
        ),
    ]);
    w.set(&[k("k")], &value).unwrap();
    w.commit().unwrap();

    let check = |heap: &Heap| {
        let r = heap.read().unwrap();
        let get = |p: &[Key]| r.get(p).unwrap();
        assert!(matches!(get(&[k("k"), k("none")]), Some(Value::None)));
        assert!(matches!(get(&[k("k"), k("t")]), Some(Value::Bool(true))));
        assert!(matches!(get(&[k("k"), k("small")]), Some(Value::Int(-42))));
        assert!(matches!(get(&[k("k"), k("i64")]), Some(Value::Int(i64::MAX))));
        match get(&[k("k"), k("big")]) {
            Some(Value::BigInt(b)) => assert_eq!(b[b.len() - 1], 0x40),
            other => panic!("{other:?}"),
        }
        assert!(matches!(get(&[k("k"), k("f")]), Some(Value::Float(f)) if f == 2.5));
        assert!(matches!(get(&[k("k"), k("f2")]), Some(Value::Float(f)) if f == 0.1));
        assert!(matches!(get(&[k("k"), k("nan")]), Some(Value::Float(f)) if f.is_nan()));
        assert_eq!(text(get(&[k("k"), k("short")])), "hi");
        assert_eq!(text(get(&[k("k"), k("long")])), "a string longer than seven bytes, with ünïcödé");
        match get(&[k("k"), k("bytes")]) {
            Some(Value::Bytes(b)) => assert_eq!(b.as_bytes(), b"\x00\x01raw bytes here"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(get(&[k("k"), k("tuple"), Key::Int(1)]), Some(Value::Str(_))));
        assert!(matches!(get(&[k("k"), k("list"), Key::Int(-1)]), Some(Value::Int(99))));
        match get(&[k("k"), k("list")]) {
            Some(Value::List(l)) => {
                assert_eq!(l.len().unwrap(), 100);
                let items: Vec<i64> = l
                    .items()
                    .unwrap()
                    .into_iter()
                    .map(|v| if let Value::Int(i) = v { i } else { -1 })
                    .collect();
                assert_eq!(items, (0..100).collect::<Vec<_>>());
            }
            other => panic!("{other:?}"),
        }
        match get(&[k("k"), k("set")]) {
            Some(Value::Set(st)) => {
                assert_eq!(st.len().unwrap(), 2, "1, 1.0 and True are one element");
                assert!(st.contains(&Key::Float(1.0)).unwrap());
                assert!(st.contains(&k("one")).unwrap());
            }
            other => panic!("{other:?}"),
        }
        match get(&[k("k"), k("rec")]) {
            Some(Value::Record(rec)) => {
                assert_eq!(rec.type_name().unwrap().as_str(), "Frob");
                assert!(matches!(rec.get("bar").unwrap(), Some(Value::Int(23))));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(get(&[k("k"), k("rec"), k("foo")]), Some(Value::Int(9))));
        // Insertion order is kept.
        match get(&[k("k")]) {
            Some(Value::Dict(d)) => {
                let keys: Vec<String> = d
                    .keys()
                    .unwrap()
                    .into_iter()
                    .map(|v| if let Value::Str(s) = v { s.as_str().to_string() } else { String::new() })
                    .collect();
                assert_eq!(keys[0], "none");
                assert_eq!(keys[15], "rec");
                assert_eq!(d.len().unwrap(), 16);
            }
            other => panic!("{other:?}"),
        }
    };
    check(&heap);
    heap.close().unwrap();
    let heap = Heap::open(&path, Options { readonly: true, ..Options::default() }).unwrap();
    check(&heap);
}

#[test]
fn numbers_are_one_key_and_aborts_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let heap = Heap::open(dir.path().join("h"), Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[Key::Int(1)], &s("int")).unwrap();
    w.set(&[Key::Float(1.0)], &s("float")).unwrap();
    w.set(&[Key::Bool(true)], &s("bool")).unwrap();
    w.commit().unwrap();
    let r = heap.read().unwrap();
    assert_eq!(r.root().unwrap().len().unwrap(), 1);
    assert_eq!(text(r.get(&[Key::Int(1)]).unwrap()), "bool");
    drop(r);

    let before = heap.stats().unwrap();
    {
        let mut w = heap.write().unwrap();
        for i in 0..1000 {
            w.set(&[Key::Int(i)], &s(&format!("value number {i} long enough to be boxed"))).unwrap();
        }
        // Dropped without commit: aborted.
    }
    let r = heap.read().unwrap();
    assert_eq!(r.root().unwrap().len().unwrap(), 1);
    let after = heap.stats().unwrap();
    assert_eq!(before.blocks_live, after.blocks_live, "an aborted transaction frees what it allocated");
}

#[test]
fn snapshots_are_isolated_and_sharing_has_value_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let heap = Heap::open(dir.path().join("h"), Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[k("a")], &Input::List(vec![Input::Int(1), Input::Int(2)])).unwrap();
    w.commit().unwrap();
    let old = heap.read().unwrap();

    let mut w = heap.write().unwrap();
    let a = w.share(&[k("a")]).unwrap().unwrap();
    w.set(&[k("b")], &a).unwrap();
    w.append(&[k("a")], &Input::Int(3)).unwrap();
    w.commit().unwrap();

    let new = heap.read().unwrap();
    let len = |r: &eterna::ReadTxn, key: &str| match r.get(&[k(key)]).unwrap() {
        Some(Value::List(l)) => l.len().unwrap(),
        _ => 0,
    };
    assert_eq!(len(&new, "a"), 3);
    assert_eq!(len(&new, "b"), 2, "b keeps the value a had when it was stored");
    assert_eq!(len(&old, "a"), 2, "an older snapshot never changes");
    assert!(old.get(&[k("b")]).unwrap().is_none());
    // Absent at the end of the path is `None`; absent before it is an error naming the
    // first missing key, in a snapshot and in a write transaction alike.
    match old.get(&[k("b"), Key::Int(0)]) {
        Err(eterna::TxnError::NotFound { path }) => assert_eq!(path, "root[\"b\"]"),
        other => panic!("{other:?}"),
    }
    let w = heap.write().unwrap();
    assert!(w.get(&[k("a"), Key::Int(7)]).unwrap().is_none());
    match w.get(&[k("zz"), k("y"), k("x")]) {
        Err(eterna::TxnError::NotFound { path }) => assert_eq!(path, "root[\"zz\"]"),
        other => panic!("{other:?}"),
    }
}

/// `try_write_now` begins a transaction only when it can without waiting or taking the
/// writer's role: not on a read-only heap, not before this process's first write, not
/// while another transaction runs; one it begins sees the last commit and, dropped,
/// changes nothing.
#[test]
fn try_write_now_never_waits_nor_takes_the_writer_role() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h");
    let heap = Heap::open(&path, Options::default()).unwrap();
    assert!(heap.try_write_now().is_none(), "no write yet: the writer's role is not taken");
    let mut w = heap.write().unwrap();
    w.set(&[k("x")], &s("one")).unwrap();
    w.commit().unwrap();

    let held = heap.write().unwrap();
    assert!(heap.try_write_now().is_none(), "a transaction is running");
    drop(held);

    let t = heap.try_write_now().expect("the writer's role is held and free");
    assert_eq!(text(t.get(&[k("x")]).unwrap()), "one");
    drop(t);
    let mut w = heap.write().unwrap();
    w.set(&[k("x")], &s("two")).unwrap();
    w.commit().unwrap();
    assert_eq!(text(heap.try_write_now().unwrap().get(&[k("x")]).unwrap()), "two");
    heap.close().unwrap();

    let ro = Heap::open(&path, Options { readonly: true, ..Options::default() }).unwrap();
    assert!(ro.try_write_now().is_none(), "a read-only heap never writes");
}

/// `Input::StrDict` (str pairs packed in one buffer) stores exactly what the same
/// `Input::Dict` stores: entries, insertion order, a repeated key keeping its first
/// position and last value, and the short and empty dicts the bulk builder leaves to the
/// general path.
#[test]
fn a_packed_str_dict_stores_what_the_same_dict_stores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let heap = Heap::open(&path, Options::default()).unwrap();
    let cases: Vec<Vec<(String, String)>> = vec![
        vec![],
        vec![("only".into(), "one".into())],
        (0..3000).map(|i| (format!("key {i}"), "x".repeat(i % 70))).collect(),
        vec![("a".into(), "1".into()), ("b".into(), "2".into()), ("a".into(), "3".into())],
        vec![("ключ".into(), "значение".into()), ("".into(), "empty key".into()), ("k".into(), "".into())],
    ];
    for (n, case) in cases.iter().enumerate() {
        let mut packed = eterna::object::StrPairs::with_capacity(case.len(), 0);
        for (key, value) in case {
            packed.push(key, value);
        }
        assert_eq!(packed.len(), case.len());
        let plain = Input::Dict(case.iter().map(|(key, value)| (s(key), s(value))).collect());
        let mut w = heap.write().unwrap();
        w.set(&[k(&format!("packed {n}"))], &Input::StrDict(packed)).unwrap();
        w.set(&[k(&format!("plain {n}"))], &plain).unwrap();
        w.commit().unwrap();
        let r = heap.read().unwrap();
        let entries = |name: String| -> Vec<(String, String)> {
            match r.get(&[k(&name)]).unwrap() {
                Some(Value::Dict(d)) => d
                    .items()
                    .unwrap()
                    .into_iter()
                    .map(|(key, value)| (text(Some(key)), text(Some(value))))
                    .collect(),
                other => panic!("{name}: {other:?}"),
            }
        };
        let (a, b) = (entries(format!("packed {n}")), entries(format!("plain {n}")));
        assert_eq!(a, b, "case {n}");
        if n == 3 {
            assert_eq!(a, vec![("a".to_string(), "3".to_string()), ("b".to_string(), "2".to_string())]);
        }
    }
    heap.close().unwrap();
    eterna::check::check(&path).unwrap();
}

#[test]
fn a_thread_in_a_write_transaction_gets_an_error_not_a_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested");
    let heap = Heap::open(&path, Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[Key::from("k")], &Input::Int(1)).unwrap();
    assert!(matches!(heap.write(), Err(eterna::TxnError::Nested)));
    assert!(matches!(heap.gc(), Err(eterna::TxnError::Nested)));
    assert!(matches!(heap.compact(), Err(eterna::TxnError::Nested)));
    assert!(matches!(heap.shutdown(), Err(eterna::TxnError::Nested)));
    assert!(heap.stats().is_ok(), "stats read the file instead of waiting");
    // Another thread waits for the transaction instead (and gets no error).
    std::thread::scope(|s| {
        let other = s.spawn(|| heap.write().map(drop).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(50));
        w.commit().unwrap();
        assert!(other.join().unwrap());
    });
    let mut w = heap.write().unwrap();
    w.set(&[Key::from("k")], &Input::Int(2)).unwrap();
    w.commit().unwrap();
    heap.close().unwrap();
}

#[test]
fn a_wrong_type_error_names_the_value_that_is_not_a_container() {
    let dir = tempfile::tempdir().unwrap();
    let heap = Heap::open(dir.path().join("heap"), Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    w.set_creating(&[k("a"), k("b"), k("c")], &Input::Int(1)).unwrap();
    w.set(&[k("l")], &Input::List(vec![Input::Int(1)])).unwrap();
    w.set(&[k("s")], &s("a str longer than seven bytes")).unwrap();
    let msg = |r: Result<(), eterna::TxnError>| r.unwrap_err().to_string();
    // The int is at root["a"]["b"]["c"], whichever key comes after it.
    let int_at_c = "root[\"a\"][\"b\"][\"c\"] is an int, not a container";
    assert_eq!(msg(w.set(&[k("a"), k("b"), k("c"), k("d")], &Input::Int(1))), int_at_c);
    assert_eq!(msg(w.set_creating(&[k("a"), k("b"), k("c"), k("d"), k("e")], &Input::Int(1))), int_at_c);
    assert_eq!(msg(w.del(&[k("a"), k("b"), k("c"), k("d")])), int_at_c);
    assert_eq!(w.get(&[k("a"), k("b"), k("c"), k("d")]).unwrap_err().to_string(), int_at_c);
    assert_eq!(
        msg(w.set(&[k("s"), k("x")], &Input::Int(1))),
        "root[\"s\"] is a str, not a dict, list or record"
    );
    assert_eq!(msg(w.append(&[k("a"), k("b")], &Input::Int(1))), "root[\"a\"][\"b\"] is a dict, not a list");
    assert_eq!(msg(w.set_add(&[k("l")], &Key::Int(1)).map(|_| ())), "root[\"l\"] is a list, not a set");
    // A key of the wrong kind is named through the key.
    assert_eq!(
        msg(w.set(&[k("l"), k("x")], &Input::Int(1))),
        "root[\"l\"][\"x\"] is a str, not a list index (int)"
    );
}
