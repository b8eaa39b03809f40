use eterna::{Durability, Heap, Input, Key, Options, Value};
use std::time::Instant;
fn main() {
    let n: i64 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let heap =
        Heap::open(dir.path().join("h"), Options { durability: Durability::None, ..Options::default() })
            .unwrap();
    let pairs: Vec<(Input, Input)> = (0..n)
        .map(|i| (Input::Str(format!("key{i:08}")), Input::Str(format!("value-{i}-xxxxxxxxxx"))))
        .collect();
    let t = Instant::now();
    let mut w = heap.write().unwrap();
    w.set(&[Key::from("d")], &Input::Dict(pairs)).unwrap();
    w.commit().unwrap();
    let bulk = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut w = heap.write().unwrap();
    for i in 0..n {
        w.set(&[Key::Str(format!("key{i:08}").into())], &Input::Str(format!("value-{i}-xxxxxxxxxx")))
            .unwrap();
    }
    w.commit().unwrap();
    let build = t.elapsed().as_secs_f64();
    let r = heap.read().unwrap();
    let root = match r.get(&[Key::from("d")]).unwrap() {
        Some(Value::Dict(d)) => d,
        _ => panic!(),
    };
    let mut x = 0x1234567u64;
    let mut sum = 0;
    let t = Instant::now();
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % n as u64;
        if let Some(Value::Str(s)) = root.get(&Key::Str(format!("key{i:08}").into())).unwrap() {
            sum += s.as_str().len();
        }
    }
    let gets = t.elapsed().as_secs_f64();
    println!(
        "bulk dict {:.2} M/s, per-key set {:.2} M/s, gets {:.2} M/s ({sum}); disk {} MiB",
        n as f64 / bulk / 1e6,
        n as f64 / build / 1e6,
        n as f64 / gets / 1e6,
        heap.stats().unwrap().disk_bytes >> 20
    );
}
