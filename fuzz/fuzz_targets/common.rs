//! What the fuzz targets share: reading every value of a (possibly damaged) heap.

use eterna::Value;

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
