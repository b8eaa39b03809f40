//! JSON in and out of the heap for the CLI. JSON objects become dicts, arrays lists,
//! numbers ints (of any size) or floats; a float beyond f64's range becomes `inf`, as in
//! Python's json.
//! Values JSON cannot hold are written as one-key objects that say what they were:
//! `{"$bytes": "hex"}`, `{"$tuple": [...]}`, `{"$set": [...]}`, `{"$frozenset": [...]}`,
//! `{"$int": "digits"}` (beyond 64 bits), `{"$float": "nan" | "inf" | "-inf"}`,
//! `{"$record": "TypeName", "fields": {...}}`, and `{"$dict": [[key, value], ...]}` for a
//! dict with keys that are not all strings.

use eterna::object::{Dict, Value};
use eterna::{Input, TxnError};
use serde_json::{json, Map, Number, Value as Json};

/// A JSON value as an input to store. A number with a fraction or an exponent becomes a
/// float; one beyond a float's range becomes `inf` or `-inf`, as Python's
/// `json.loads("1e400")` gives (and one too small for it, 0.0).
pub fn to_input(j: &Json) -> Result<Input, String> {
    Ok(match j {
        Json::Null => Input::None,
        Json::Bool(b) => Input::Bool(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Input::Int(i)
            } else if let Some(b) = decimal_bigint(&n.to_string()) {
                Input::BigInt(b)
            } else {
                // Not `as_f64`: it gives `None` for a number out of range.
                let text = n.to_string();
                Input::Float(text.parse().map_err(|e| format!("the JSON number {text} is not a float: {e}"))?)
            }
        }
        Json::String(s) => Input::Str(s.clone()),
        Json::Array(items) => Input::List(items.iter().map(to_input).collect::<Result<_, _>>()?),
        Json::Object(m) => Input::Dict(
            m.iter()
                .map(|(k, v)| Ok((Input::Str(k.clone()), to_input(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Two's complement little-endian bytes of a decimal integer literal (`-?[0-9]+`), or
/// `None` for anything else (a JSON float).
pub fn decimal_bigint(text: &str) -> Option<Vec<u8>> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Magnitude, little-endian base 256: multiply by ten and add, digit by digit.
    let mut mag: Vec<u8> = vec![0];
    for d in digits.bytes() {
        let mut carry = (d - b'0') as u16;
        for byte in mag.iter_mut() {
            let v = *byte as u16 * 10 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        if carry > 0 {
            mag.push(carry as u8);
        }
    }
    mag.push(0); // room for the sign bit
    if neg {
        let mut carry = 1u16;
        for b in mag.iter_mut() {
            let v = (!*b) as u16 + carry;
            *b = v as u8;
            carry = v >> 8;
        }
    }
    Some(mag)
}

/// Decimal digits of a two's complement little-endian integer.
pub fn bigint_decimal(bytes: &[u8]) -> String {
    let neg = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut mag: Vec<u8> = bytes.to_vec();
    if neg {
        let mut carry = 1u16;
        for b in mag.iter_mut() {
            let v = (!*b) as u16 + carry;
            *b = v as u8;
            carry = v >> 8;
        }
    }
    // Repeated division by 10^9 over base-256 digits, most significant first.
    let mut digits: Vec<u32> = mag.iter().rev().map(|&b| b as u32).collect();
    let mut parts = Vec::new();
    while digits.iter().any(|&d| d != 0) {
        let mut rem = 0u64;
        for d in digits.iter_mut() {
            let cur = rem * 256 + *d as u64;
            *d = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        parts.push(rem as u32);
        while digits.first() == Some(&0) {
            digits.remove(0);
        }
    }
    let mut s = String::from(if neg { "-" } else { "" });
    match parts.split_last() {
        None => s.push('0'),
        Some((first, rest)) => {
            s.push_str(&first.to_string());
            for p in rest.iter().rev() {
                s.push_str(&format!("{p:09}"));
            }
        }
    }
    s
}

fn float(f: f64) -> Json {
    match Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None => {
            json!({"$float": if f.is_nan() { "nan".to_string() } else if f > 0.0 { "inf".into() } else { "-inf".into() }})
        }
    }
}

fn dict(d: &Dict<'_>, depth: usize) -> Result<Json, TxnError> {
    let to_json = |v: &Value<'_>| at_depth(v, depth + 1);
    let items = d.items()?;
    if items.iter().all(|(k, _)| matches!(k, Value::Str(_))) {
        let mut m = Map::new();
        for (k, v) in items {
            if let Value::Str(s) = k {
                m.insert(s.as_str().to_string(), to_json(&v)?);
            }
        }
        Ok(Json::Object(m))
    } else {
        let pairs: Result<Vec<Json>, TxnError> =
            items.iter().map(|(k, v)| Ok(json!([to_json(k)?, to_json(v)?]))).collect();
        Ok(json!({"$dict": pairs?}))
    }
}

/// Deepest nesting `to_json` follows; a file nested deeper is taken for corrupt (only a
/// damaged file can hold a reference cycle).
const MAX_DEPTH: usize = eterna::MAX_NESTING;

/// A stored value as JSON, marking what JSON cannot hold.
pub fn to_json(v: &Value<'_>) -> Result<Json, TxnError> {
    at_depth(v, 0)
}

fn at_depth(v: &Value<'_>, depth: usize) -> Result<Json, TxnError> {
    if depth > MAX_DEPTH {
        return Err(TxnError::Corrupt(eterna::Corruption {
            offset: 0,
            what: "values nested too deeply (a reference cycle?)".into(),
        }));
    }
    let to_json = |v: &Value<'_>| at_depth(v, depth + 1);
    Ok(match v {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => json!(i),
        Value::BigInt(b) => json!({"$int": bigint_decimal(b)}),
        Value::Float(f) => float(*f),
        Value::Str(s) => Json::String(s.as_str().to_string()),
        Value::Bytes(b) => {
            json!({"$bytes": b.as_bytes().iter().map(|x| format!("{x:02x}")).collect::<String>()})
        }
        Value::Tuple(t) => json!({"$tuple": t.items()?.iter().map(to_json).collect::<Result<Vec<_>, _>>()?}),
        Value::List(l) => Json::Array(l.items()?.iter().map(to_json).collect::<Result<Vec<_>, _>>()?),
        Value::Dict(d) => dict(d, depth)?,
        Value::Set(s) => json!({"$set": s.items()?.iter().map(to_json).collect::<Result<Vec<_>, _>>()?}),
        Value::FrozenSet(s) => {
            json!({"$frozenset": s.items()?.iter().map(to_json).collect::<Result<Vec<_>, _>>()?})
        }
        Value::Record(r) => {
            let mut m = Map::new();
            for (k, v) in r.fields()? {
                m.insert(k.as_str().to_string(), to_json(&v)?);
            }
            json!({"$record": r.type_name()?.as_str(), "fields": Json::Object(m)})
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_round_trips() {
        for text in ["0", "-1", "18446744073709551616", "-123456789012345678901234567890"] {
            assert_eq!(bigint_decimal(&decimal_bigint(text).unwrap()), text);
        }
        assert!(decimal_bigint("1.5").is_none());
        assert!(decimal_bigint("1e30").is_none());
    }

    #[test]
    fn numbers_beyond_a_float_become_infinite_as_in_python() {
        let float = |text: &str| match to_input(&serde_json::from_str(text).unwrap()).unwrap() {
            Input::Float(f) => f,
            _ => panic!("{text} is not a float"),
        };
        assert_eq!(float("1e400"), f64::INFINITY);
        assert_eq!(float("-1e400"), f64::NEG_INFINITY);
        assert_eq!(float("1e-400"), 0.0);
        assert_eq!(float("2.5e3"), 2500.0);
        assert_eq!(float("0.1"), 0.1);
        assert!(matches!(to_input(&serde_json::from_str("[1e400]").unwrap()), Ok(Input::List(_))));
    }

    #[test]
    fn bigint_digits() {
        assert_eq!(bigint_decimal(&[0]), "0");
        assert_eq!(bigint_decimal(&[0xff]), "-1");
        assert_eq!(bigint_decimal(&(u64::MAX as u128).to_le_bytes()), "18446744073709551615");
        assert_eq!(bigint_decimal(&(-(10i128.pow(30))).to_le_bytes()), "-1000000000000000000000000000000");
    }
}
