//! What the fuzz targets share: everything a program may do with a (possibly damaged)
//! heap file.

use eterna::{Heap, Input, Key, Options, Value};
use std::path::Path;

/// Opens the heap at `path` read-only and reads every value, checks it, then opens it for
/// writing, sets a key, deletes another, commits, collects and compacts. Every outcome
/// must be a value or an error.
pub fn exercise(path: &Path) {
    if let Ok(heap) = Heap::open(path, Options { readonly: true, ..Options::default() }) {
        if let Ok(r) = heap.read() {
            if let Ok(root) = r.root() {
                read_all(&Value::Dict(root), 0);
            }
        }
    }
    let _ = eterna::check::check(path);
    if let Ok(heap) = Heap::open(path, Options { create: false, ..Options::default() }) {
        if let Ok(mut w) = heap.write() {
            let _ = w.set(&[Key::from("fuzz")], &Input::Str("written after damage".into()));
            let _ = w.del(&[Key::from("k3")]);
            let _ = w.commit();
        }
        let _ = heap.gc();
        let _ = heap.compact();
    }
}

/// Reads every value under `v`, up to a depth and a count, ignoring errors: the point is
/// that reading returns, whatever the file holds.
pub fn read_all(v: &Value<'_>, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Dict(d) => {
            if let Ok(items) = d.iter() {
                for (k, v) in items.flatten().take(10_000) {
                    read_all(&k, depth + 1);
                    read_all(&v, depth + 1);
                }
            }
        }
        Value::List(l) => {
            if let Ok(items) = l.iter() {
                for x in items.flatten().take(10_000) {
                    read_all(&x, depth + 1);
                }
            }
        }
        Value::Set(s) | Value::FrozenSet(s) => {
            if let Ok(items) = s.iter() {
                for x in items.flatten().take(10_000) {
                    read_all(&x, depth + 1);
                }
            }
        }
        Value::Tuple(t) => {
            for x in t.items().unwrap_or_default() {
                read_all(&x, depth + 1);
            }
        }
        Value::Record(r) => {
            for (_, x) in r.fields().unwrap_or_default() {
                read_all(&x, depth + 1);
            }
        }
        _ => {}
    }
}
