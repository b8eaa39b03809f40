//! The heap against a plain Rust model: random sequences of sets, nested sets, deletes,
//! appends, structural sharing, commits, aborts and reopens. After every operation the
//! transaction's view equals the model's working state; after every commit and reopen
//! the committed state equals the model's, and `check` passes.

use eterna::{Heap, Input, Key, Options, Value};
use proptest::prelude::*;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
enum M {
    Int(i64),
    Str(String),
    List(Vec<M>),
    Dict(Vec<(String, M)>),
}

impl M {
    fn input(&self) -> Input {
        match self {
            M::Int(i) => Input::Int(*i),
            M::Str(s) => Input::Str(s.clone()),
            M::List(v) => Input::List(v.iter().map(M::input).collect()),
            M::Dict(v) => Input::Dict(v.iter().map(|(k, m)| (Input::Str(k.clone()), m.input())).collect()),
        }
    }

    fn of(v: &Value<'_>) -> M {
        match v {
            Value::Int(i) => M::Int(*i),
            Value::Str(s) => M::Str(s.as_str().to_string()),
            Value::List(l) => M::List(l.items().unwrap().iter().map(M::of).collect()),
            Value::Dict(d) => M::Dict(
                d.items()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| match k {
                        Value::Str(s) => (s.as_str().to_string(), M::of(v)),
                        other => panic!("unexpected key {other:?}"),
                    })
                    .collect(),
            ),
            other => panic!("unexpected value {other:?}"),
        }
    }

    fn dict_set(entries: &mut Vec<(String, M)>, k: &str, v: M) {
        match entries.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v,
            None => entries.push((k.to_string(), v)),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Set(u8, M),
    SetNested(u8, u8, M),
    Del(u8),
    DelNested(u8, u8),
    Append(u8, M),
    /// Insert before index (taken modulo the length + 1).
    Insert(u8, u16, M),
    /// Delete at index (modulo the length).
    DelIndex(u8, u16),
    Share(u8, u8),
    Commit,
    Abort,
    Reopen,
}

fn leaf() -> impl Strategy<Value = M> {
    prop_oneof![any::<i64>().prop_map(M::Int), "[a-z]{0,5}".prop_map(M::Str), "[a-z ]{8,40}".prop_map(M::Str),]
}

fn value() -> impl Strategy<Value = M> {
    leaf().prop_recursive(2, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(M::List),
            prop::collection::vec(any::<i64>().prop_map(M::Int), 30..90).prop_map(M::List),
            prop::collection::vec(("[a-d]", inner), 0..6).prop_map(|kv| {
                let mut d = Vec::new();
                for (k, v) in kv {
                    M::dict_set(&mut d, &k, v);
                }
                M::Dict(d)
            }),
        ]
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, value()).prop_map(|(k, v)| Op::Set(k, v)),
        4 => (0u8..6, 0u8..4, value()).prop_map(|(k, s, v)| Op::SetNested(k, s, v)),
        2 => (0u8..6).prop_map(Op::Del),
        2 => (0u8..6, 0u8..4).prop_map(|(k, s)| Op::DelNested(k, s)),
        3 => (0u8..6, leaf()).prop_map(|(k, v)| Op::Append(k, v)),
        2 => (0u8..6, any::<u16>(), leaf()).prop_map(|(k, i, v)| Op::Insert(k, i, v)),
        2 => (0u8..6, any::<u16>()).prop_map(|(k, i)| Op::DelIndex(k, i)),
        2 => (0u8..6, 0u8..6).prop_map(|(a, b)| Op::Share(a, b)),
        3 => Just(Op::Commit),
        1 => Just(Op::Abort),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u8) -> String {
    format!("k{k}")
}
fn sub(s: u8) -> String {
    ["a", "b", "c", "d"][s as usize].to_string()
}
fn kk(s: &str) -> Key<'static> {
    Key::Str(s.to_string().into())
}

fn committed(heap: &Heap) -> M {
    let r = heap.read().unwrap();
    M::of(&Value::Dict(r.root().unwrap()))
}

fn check(path: &Path) {
    let report = eterna::check::check(path).unwrap_or_else(|e| panic!("check failed: {e}"));
    assert!(!report.interrupted);
}

fn run(ops: Vec<Op>, path: &Path) {
    let mut model: Vec<(String, M)> = Vec::new();
    let mut ops = ops.into_iter().peekable();
    // One heap session per stretch of operations between reopens.
    while ops.peek().is_some() {
        let heap =
            Heap::open(path, Options { durability: eterna::Durability::None, ..Options::default() }).unwrap();
        assert_eq!(committed(&heap), M::Dict(model.clone()));
        let mut working = model.clone();
        let mut w = Some(heap.write().unwrap());
        for op in ops.by_ref() {
            if matches!(op, Op::Reopen) {
                break;
            }
            apply(&heap, &mut w, op, &mut model, &mut working, path);
            let seen = M::of(&w.as_ref().unwrap().get(&[]).unwrap().unwrap());
            assert_eq!(seen, M::Dict(working.clone()));
        }
        drop(w);
        heap.close().unwrap();
        check(path);
    }
}

fn apply<'h>(
    heap: &'h Heap,
    w: &mut Option<eterna::WriteTxn<'h>>,
    op: Op,
    model: &mut Vec<(String, M)>,
    working: &mut Vec<(String, M)>,
    path: &Path,
) {
    let txn = w.as_mut().expect("a transaction is open");
    match op {
        Op::Set(k, v) => {
            txn.set(&[kk(&key(k))], &v.input()).unwrap();
            M::dict_set(working, &key(k), v);
        }
        Op::SetNested(k, s, v) => {
            let is_dict = matches!(working.iter().find(|(ek, _)| *ek == key(k)), Some((_, M::Dict(_))));
            let r = txn.set(&[kk(&key(k)), kk(&sub(s))], &v.input());
            if is_dict {
                r.unwrap();
                if let Some((_, M::Dict(d))) = working.iter_mut().find(|(ek, _)| *ek == key(k)) {
                    M::dict_set(d, &sub(s), v);
                }
            } else {
                assert!(r.is_err(), "setting into a non-dict must fail");
            }
        }
        Op::Del(k) => {
            let r = txn.del(&[kk(&key(k))]);
            match working.iter().position(|(ek, _)| *ek == key(k)) {
                Some(i) => {
                    r.unwrap();
                    working.remove(i);
                }
                None => assert!(r.is_err()),
            }
        }
        Op::DelNested(k, s) => {
            let r = txn.del(&[kk(&key(k)), kk(&sub(s))]);
            match working.iter_mut().find(|(ek, _)| *ek == key(k)) {
                Some((_, M::Dict(d))) if d.iter().any(|(ek, _)| *ek == sub(s)) => {
                    r.unwrap();
                    d.retain(|(ek, _)| *ek != sub(s));
                }
                _ => assert!(r.is_err()),
            }
        }
        Op::Append(k, v) => {
            let r = txn.append(&[kk(&key(k))], &v.input());
            match working.iter_mut().find(|(ek, _)| *ek == key(k)) {
                Some((_, M::List(l))) => {
                    r.unwrap();
                    l.push(v);
                }
                _ => assert!(r.is_err()),
            }
        }
        Op::Insert(k, i, v) => match working.iter_mut().find(|(ek, _)| *ek == key(k)) {
            Some((_, M::List(l))) => {
                let at = i as usize % (l.len() + 1);
                txn.splice(&[kk(&key(k))], at as u64, 0, std::slice::from_ref(&v.input())).unwrap();
                l.insert(at, v);
            }
            _ => assert!(txn.splice(&[kk(&key(k))], 0, 0, &[v.input()]).is_err()),
        },
        Op::DelIndex(k, i) => match working.iter_mut().find(|(ek, _)| *ek == key(k)) {
            Some((_, M::List(l))) if !l.is_empty() => {
                let at = i as usize % l.len();
                txn.del(&[kk(&key(k)), Key::Int(at as i64)]).unwrap();
                l.remove(at);
            }
            _ => assert!(txn.del(&[kk(&key(k)), Key::Int(0)]).is_err()),
        },
        Op::Share(a, b) => {
            if let Some(input) = txn.share(&[kk(&key(a))]).unwrap() {
                txn.set(&[kk(&key(b))], &input).unwrap();
                let v = working.iter().find(|(ek, _)| *ek == key(a)).unwrap().1.clone();
                M::dict_set(working, &key(b), v);
            }
        }
        Op::Commit => {
            w.take().unwrap().commit().unwrap();
            *model = working.clone();
            assert_eq!(committed(heap), M::Dict(model.clone()));
            check(path);
            *w = Some(heap.write().unwrap());
        }
        Op::Abort => {
            drop(w.take());
            *working = model.clone();
            assert_eq!(committed(heap), M::Dict(model.clone()));
            *w = Some(heap.write().unwrap());
        }
        Op::Reopen => unreachable!("handled by the session loop"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn heap_matches_model(ops in prop::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        run(ops, &dir.path().join("heap"));
    }
}
