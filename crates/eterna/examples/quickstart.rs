//! A first program: store Python-style values in a heap file, commit, and read them back
//! from a snapshot. Run it twice to see the counter survive the restart:
//!
//! ```sh
//! cargo run -p eterna --example quickstart -- /tmp/quickstart.eterna
//! ```

use eterna::{Heap, Input, Key, Options, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "quickstart.eterna".into());
    let heap = Heap::open(&path, Options::default())?;

    // One write transaction: all of it is committed, or none of it.
    let mut w = heap.write()?;
    let runs = match w.get(&[Key::from("runs")])? {
        Some(Value::Int(n)) => n + 1,
        _ => 1,
    };
    w.set(&[Key::from("runs")], &Input::Int(runs))?;
    w.set(
        &[Key::from("frob")],
        &Input::Record {
            type_name: "Frob".into(),
            fields: vec![("foo".into(), Input::Int(9)), ("bar".into(), Input::Int(23))],
        },
    )?;
    w.set(
        &[Key::from("config")],
        &Input::Dict(vec![
            ("name".into(), "eterna".into()),
            ("ratios".into(), Input::List(vec![Input::Float(0.5), Input::Float(2.5)])),
            ("raw".into(), Input::Bytes(b"\x00\x01".to_vec())),
        ]),
    )?;
    w.append(&[Key::from("config"), Key::from("ratios")], &Input::Float(7.0))?;
    w.commit()?;

    // A snapshot: zero-copy views into the mapped file.
    let r = heap.read()?;
    if let Some(Value::Record(frob)) = r.get(&[Key::from("frob")])? {
        println!("{}(foo={:?}, bar={:?})", frob.type_name()?.as_str(), frob.get("foo")?, frob.get("bar")?);
    }
    if let Some(Value::List(ratios)) = r.get(&[Key::from("config"), Key::from("ratios")])? {
        println!("ratios: {:?}", ratios.items()?);
    }
    println!("this heap has been opened by {runs} run(s) of this example; file: {path}");
    drop(r);
    heap.close()?;
    Ok(())
}
