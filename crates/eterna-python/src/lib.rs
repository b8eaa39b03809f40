//! `eterna._eterna`: the Python binding's native module. It knows heaps, snapshots and
//! write transactions, and converts values at the edge; the proxies (`eterna.Dict`, ...)
//! are written in Python on top of it (`python/eterna/__init__.py`).

use eterna::object::StrPairs;
use eterna::{Durability, Heap, Input, Key, Options, ReadTxn, TxnError, Value, WriteTxn};
use pyo3::exceptions::{PyException, PyIndexError, PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFrozenSet, PyList, PySet, PyString, PyTuple};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

pyo3::create_exception!(eterna, Error, PyException, "Base class of eterna's errors.");
pyo3::create_exception!(eterna, CorruptionError, Error, "The heap file is inconsistent.");
pyo3::create_exception!(eterna, LockTimeout, Error, "Another process held the writer lock too long.");
pyo3::create_exception!(eterna, ReadOnlyError, Error, "The heap was opened read-only.");

/// Python's exception for a core error.
fn err(e: TxnError) -> PyErr {
    let msg = e.to_string();
    match e {
        TxnError::NotFound { .. } => PyKeyError::new_err(msg),
        TxnError::IndexOutOfRange { .. } => PyIndexError::new_err(msg),
        TxnError::WrongType { .. } | TxnError::Unhashable { .. } => PyTypeError::new_err(msg),
        TxnError::TooLarge { .. } => PyValueError::new_err(msg),
        TxnError::ReadOnly => ReadOnlyError::new_err(msg),
        TxnError::LockTimeout { .. } => LockTimeout::new_err(msg),
        TxnError::Corrupt(_) => CorruptionError::new_err(msg),
        _ => Error::new_err(msg),
    }
}

fn corrupt(e: eterna::Corruption) -> PyErr {
    CorruptionError::new_err(e.to_string())
}

// CPython's UTF-8 view of a str: in the C API since 3.3, but in the stable ABI only from
// 3.10, so pyo3's abi3-py39 build does not declare it. Every CPython this package supports
// exports it.
extern "C" {
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut pyo3::ffi::PyObject,
        size: *mut pyo3::ffi::Py_ssize_t,
    ) -> *const u8;
}

/// The text of a Python str, borrowed: no copy for the common (ASCII) str, whose UTF-8 form
/// is its own storage; CPython caches the UTF-8 form of any other str in the object. A str
/// that is not valid Unicode (a lone surrogate) is a `UnicodeEncodeError`, as `encode()`.
fn str_view<'a>(s: &'a Bound<'_, PyString>) -> PyResult<&'a str> {
    let mut len: pyo3::ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live str (the cast that made the `Bound` checked its type) and the
    // GIL is held (a `Bound` proves it). The buffer returned belongs to the str object: it
    // stays valid and unchanged while the object lives, which the borrow of `s` ensures
    // for `'a`. A null return has set a Python exception, fetched below.
    let ptr = unsafe { PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut len) };
    if ptr.is_null() {
        return Err(PyErr::fetch(s.py()));
    }
    // SAFETY: CPython returns `len` bytes of valid UTF-8 at `ptr` (it refuses, above,
    // a str that has none), alive for `'a` as said above.
    Ok(unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(ptr, len as usize)) })
}

/// A path element from Python: a dict key, a list index or a field name. A str is borrowed
/// (lookups copy nothing); the parts of a tuple or frozenset are copied.
fn key_of<'a>(obj: &'a Bound<'_, PyAny>, at: &str) -> PyResult<Key<'a>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Key::Str(str_view(s)?.into()));
    }
    key_owned(obj, at)
}

/// [`key_of`], owning its text.
fn key_owned(obj: &Bound<'_, PyAny>, at: &str) -> PyResult<Key<'static>> {
    if obj.is_none() {
        return Ok(Key::None);
    }
    if let Ok(b) = obj.cast::<pyo3::types::PyBool>() {
        return Ok(Key::Bool(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Key::Str(str_view(s)?.to_string().into()));
    }
    if let Ok(i) = obj.extract::<i64>() {
        if obj.cast::<pyo3::types::PyInt>().is_ok() {
            return Ok(Key::Int(i));
        }
    }
    if obj.cast::<pyo3::types::PyInt>().is_ok() {
        return Ok(Key::BigInt(int_bytes(obj)?.into()));
    }
    if let Ok(f) = obj.cast::<pyo3::types::PyFloat>() {
        return Ok(Key::Float(f.value()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Key::Bytes(b.as_bytes().to_vec().into()));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return t.iter().map(|x| key_owned(&x, at)).collect::<PyResult<Vec<_>>>().map(Key::Tuple);
    }
    if let Ok(f) = obj.cast::<PyFrozenSet>() {
        return f.iter().map(|x| key_owned(&x, at)).collect::<PyResult<Vec<_>>>().map(Key::FrozenSet);
    }
    if obj.hash().is_err() {
        return Err(PyTypeError::new_err(format!("unhashable type: '{}' (as {at})", type_name(obj))));
    }
    Err(PyTypeError::new_err(format!(
        "a '{}' cannot be used as {at}: keys in the heap are None, bool, int, float, str, bytes, \
         and tuples and frozensets of these",
        type_name(obj)
    )))
}

/// The key `key in container` looks for: `None` when no key in the heap can equal it (a
/// hashable object of another type: simply not there); unhashable is a `TypeError`, as
/// Python's own `in` raises.
fn member_key<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<Option<Key<'a>>> {
    match key_of(key, "a key") {
        Ok(k) => Ok(Some(k)),
        Err(e) => key.hash().map(|_| None).map_err(|_| e),
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// Two's complement little-endian bytes of a Python int.
fn int_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let bits: usize = obj.call_method0("bit_length")?.extract()?;
    let kwargs = PyDict::new(obj.py());
    kwargs.set_item("signed", true)?;
    let b = obj.call_method("to_bytes", (bits / 8 + 1, "little"), Some(&kwargs))?;
    Ok(b.cast::<PyBytes>()?.as_bytes().to_vec())
}

fn path_of(path: &Bound<'_, PyTuple>) -> PyResult<Vec<Key<'static>>> {
    path.iter().map(|k| key_owned(&k, "a key in a path")).collect()
}

/// Containers nested deeper than this are refused (as Python's own recursion limit would):
/// conversion, storing and reading back all recurse once per level.
const MAX_DEPTH: usize = eterna::MAX_NESTING;

/// One step down from a container, kept unrendered: most conversions never fail, and
/// formatting every key of a large dict cost more than converting it.
enum Seg<'py> {
    Index(usize),           // a list's or tuple's item
    Key(Bound<'py, PyAny>), // a dict's key, and the value under it
    Field(String),          // a record's field
    Element(&'static str),  // a set's or frozenset's element
}

/// Where a conversion is: the path it started from, the steps taken since (both rendered
/// only for an error), and the containers open on the way down (their object addresses),
/// which finds a value that contains itself.
struct At<'a, 'py> {
    base: &'a [Key<'static>],
    segs: Vec<Seg<'py>>,
    open: Vec<usize>,
}

impl<'a, 'py> At<'a, 'py> {
    fn new(base: &'a [Key<'static>]) -> Self {
        At { base, segs: Vec::new(), open: Vec::new() }
    }

    /// The path rendered as `root["k"][0].field`.
    fn text(&self) -> String {
        let mut t = eterna::txn::render_path(self.base);
        for seg in &self.segs {
            match seg {
                Seg::Index(i) => t.push_str(&format!("[{i}]")),
                Seg::Key(k) => match k.repr() {
                    Ok(r) => t.push_str(&format!("[{r}]")),
                    Err(_) => t.push_str("[?]"),
                },
                Seg::Field(f) => t.push_str(&format!(".{f}")),
                Seg::Element(what) => t.push_str(&format!(" ({what})")),
            }
        }
        t
    }

    /// Runs `f` inside the container `obj`, refusing a cycle or excessive depth.
    fn enter<T>(&mut self, obj: &Bound<'py, PyAny>, f: impl FnOnce(&mut Self) -> PyResult<T>) -> PyResult<T> {
        let id = obj.as_ptr() as usize;
        if self.open.contains(&id) {
            return Err(PyValueError::new_err(format!(
                "cannot store a cyclic value: the {} at {} contains itself",
                type_name(obj),
                self.text()
            )));
        }
        if self.open.len() >= MAX_DEPTH {
            return Err(PyValueError::new_err(format!(
                "cannot store containers nested deeper than {MAX_DEPTH} levels (at {})",
                self.text()
            )));
        }
        self.open.push(id);
        let r = f(self);
        self.open.pop();
        r
    }
}

/// Converts a Python value to an input, naming where an unsupported value sat. A value that
/// contains itself is refused with `ValueError` (stored values are trees and DAGs).
fn input_of<'py>(
    obj: &Bound<'py, PyAny>,
    at: &mut At<'_, 'py>,
    records: &Bound<'py, PyAny>,
) -> PyResult<Input> {
    if obj.is_none() {
        return Ok(Input::None);
    }
    if let Ok(b) = obj.cast::<pyo3::types::PyBool>() {
        return Ok(Input::Bool(b.is_true()));
    }
    if obj.cast::<pyo3::types::PyInt>().is_ok() {
        return Ok(match obj.extract::<i64>() {
            Ok(i) => Input::Int(i),
            Err(_) => Input::BigInt(int_bytes(obj)?),
        });
    }
    if let Ok(f) = obj.cast::<pyo3::types::PyFloat>() {
        return Ok(Input::Float(f.value()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Input::Str(str_view(s)?.to_string()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Input::Bytes(b.as_bytes().to_vec()));
    }
    let nested = |at: &mut At<'_, 'py>, seg: Seg<'py>, x: &Bound<'py, PyAny>| -> PyResult<Input> {
        at.segs.push(seg);
        let r = input_of(x, at, records);
        at.segs.pop();
        r
    };
    if let Ok(t) = obj.cast::<PyTuple>() {
        return at.enter(obj, |at| {
            t.iter()
                .enumerate()
                .map(|(i, x)| nested(at, Seg::Index(i), &x))
                .collect::<PyResult<_>>()
                .map(Input::Tuple)
        });
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return at.enter(obj, |at| {
            l.iter()
                .enumerate()
                .map(|(i, x)| nested(at, Seg::Index(i), &x))
                .collect::<PyResult<_>>()
                .map(Input::List)
        });
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return at.enter(obj, |at| {
            // Str keys to str values (the common large dict) are packed into one buffer;
            // at the first other entry the packed ones become ordinary pairs.
            let mut packed = StrPairs::with_capacity(d.len(), 0);
            let mut items = d.iter();
            let mut other = None;
            for (k, v) in items.by_ref() {
                match (k.cast::<PyString>(), v.cast::<PyString>()) {
                    (Ok(ks), Ok(vs)) => {
                        packed.push(str_view(ks)?, str_view(vs)?);
                    }
                    _ => {
                        other = Some((k, v));
                        break;
                    }
                }
            }
            let Some(first) = other else {
                return Ok(Input::StrDict(packed));
            };
            let mut pairs = packed.to_pairs();
            pairs.reserve(d.len() - pairs.len());
            for (k, v) in std::iter::once(first).chain(items) {
                pairs.push((nested(at, Seg::Key(k.clone()), &k)?, nested(at, Seg::Key(k.clone()), &v)?));
            }
            Ok(Input::Dict(pairs))
        });
    }
    if let Ok(s) = obj.cast::<PySet>() {
        return at.enter(obj, |at| {
            s.iter()
                .map(|x| nested(at, Seg::Element("a set element"), &x))
                .collect::<PyResult<_>>()
                .map(Input::Set)
        });
    }
    if let Ok(s) = obj.cast::<PyFrozenSet>() {
        return at.enter(obj, |at| {
            s.iter()
                .map(|x| nested(at, Seg::Element("a frozenset element"), &x))
                .collect::<PyResult<_>>()
                .map(Input::FrozenSet)
        });
    }
    // A proxy of another transaction or snapshot, or a record: the Python layer knows how.
    let plain = records.call1((obj,))?;
    if plain.is_none() {
        return Err(PyTypeError::new_err(format!(
            "cannot store a value of type '{}' at {}",
            type_name(obj),
            at.text()
        )));
    }
    if let Ok(t) = plain.cast::<PyTuple>() {
        // (type name, [(field, value), ...]) for a record.
        if t.len() == 2 {
            let name: String = t.get_item(0)?.extract()?;
            return at.enter(obj, |at| {
                let mut fields = Vec::new();
                for f in t.get_item(1)?.try_iter()? {
                    let f = f?;
                    let f = f.cast::<PyTuple>()?;
                    let field: String = f.get_item(0)?.extract()?;
                    let v = nested(at, Seg::Field(field.clone()), &f.get_item(1)?)?;
                    fields.push((field, v));
                }
                Ok(Input::Record { type_name: name, fields })
            });
        }
    }
    input_of(&plain, at, records)
}

/// A container's kind, returned instead of its contents: the Python layer makes a proxy.
#[pyclass(frozen, module = "eterna._eterna")]
struct Nested {
    #[pyo3(get)]
    kind: &'static str,
    /// Where the container's object starts: in a snapshot, a stable handle on it.
    #[pyo3(get)]
    offset: u64,
}

/// A stored value as a Python object: scalars, tuples and frozensets as themselves;
/// containers as [`Nested`] (or, with `deep`, as detached copies built by `build`).
fn to_py<'py>(
    py: Python<'py>,
    v: &Value<'_>,
    deep: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    to_py_at(py, v, deep, 0)
}

/// `to_py` of a value `depth` levels down: a value nested deeper than any front end writes
/// can only be a reference cycle in a damaged file, reported instead of overflowing the stack.
fn to_py_at<'py>(
    py: Python<'py>,
    v: &Value<'_>,
    deep: Option<&Bound<'py, PyAny>>,
    depth: usize,
) -> PyResult<Bound<'py, PyAny>> {
    if depth > MAX_DEPTH {
        return Err(CorruptionError::new_err("values nested too deeply (a reference cycle?)"));
    }
    let to_py =
        |py: Python<'py>, v: &Value<'_>, deep: Option<&Bound<'py, PyAny>>| to_py_at(py, v, deep, depth + 1);
    let nested = |kind: &'static str, offset: u64| -> PyResult<Bound<'py, PyAny>> {
        Ok(Bound::new(py, Nested { kind, offset })?.into_any())
    };
    Ok(match v {
        Value::None => py.None().into_bound(py),
        Value::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::BigInt(b) => {
            let kwargs = PyDict::new(py);
            kwargs.set_item("signed", true)?;
            py.get_type::<pyo3::types::PyInt>().call_method(
                "from_bytes",
                (PyBytes::new(py, b), "little"),
                Some(&kwargs),
            )?
        }
        Value::Float(f) => f.into_pyobject(py)?.into_any(),
        Value::Str(s) => PyString::new(py, s.as_str()).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b.as_bytes()).into_any(),
        Value::Tuple(t) => {
            let items = t.items().map_err(corrupt)?;
            let items: Vec<Bound<'py, PyAny>> = items
                .iter()
                .map(|x| to_py(py, x, deep.or(Some(&py.None().into_bound(py)))))
                .collect::<PyResult<_>>()?;
            PyTuple::new(py, items)?.into_any()
        }
        Value::FrozenSet(s) => {
            let items: Vec<Bound<'py, PyAny>> =
                s.items().map_err(corrupt)?.iter().map(|x| to_py(py, x, None)).collect::<PyResult<_>>()?;
            PyFrozenSet::new(py, items.iter())?.into_any()
        }
        Value::Dict(d) => match deep {
            None => nested("dict", d.offset())?,
            Some(_) => {
                let out = PyDict::new(py);
                for item in d.iter().map_err(corrupt)? {
                    let (k, v) = item.map_err(corrupt)?;
                    out.set_item(to_py(py, &k, deep)?, to_py(py, &v, deep)?)?;
                }
                out.into_any()
            }
        },
        Value::List(l) => match deep {
            None => nested("list", l.offset())?,
            Some(_) => {
                let items: Vec<Bound<'py, PyAny>> = l
                    .iter()
                    .map_err(corrupt)?
                    .map(|x| to_py(py, &x.map_err(corrupt)?, deep))
                    .collect::<PyResult<_>>()?;
                PyList::new(py, items)?.into_any()
            }
        },
        Value::Set(s) => match deep {
            None => nested("set", s.offset())?,
            Some(_) => {
                let items: Vec<Bound<'py, PyAny>> = s
                    .items()
                    .map_err(corrupt)?
                    .iter()
                    .map(|x| to_py(py, x, deep))
                    .collect::<PyResult<_>>()?;
                PySet::new(py, items.iter())?.into_any()
            }
        },
        Value::Record(r) => {
            // Inside a tuple (`deep` is None there) a record comes back detached, built by
            // the registered builder, as the tuple around it is.
            let registered = match deep {
                Some(b) if b.is_none() => KINDS.get(py).map(|k| k[BUILD].bind(py).clone()),
                _ => None,
            };
            match registered.as_ref().or(deep.filter(|b| !b.is_none())) {
                Some(build) => {
                    let fields = PyList::empty(py);
                    for (k, v) in r.fields().map_err(corrupt)? {
                        fields.append((k.as_str(), to_py(py, &v, Some(build))?))?;
                    }
                    build.call1((r.type_name().map_err(corrupt)?.as_str(), fields))?
                }
                None => nested("record", r.offset())?,
            }
        }
    })
}

/// The reads both snapshots and write transactions offer.
macro_rules! reads {
    ($t:ident, { $($extra:tt)* }) => {
        #[pymethods]
        impl $t {
            $($extra)*

            /// The value at `path`: a plain value, or `Nested(kind)` for a container; raises
            /// KeyError/IndexError when absent.
            fn get<'py>(&self, py: Python<'py>, path: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
                let p = path_of(path)?;
                match self.txn()?.get(&p).map_err(err)? {
                    Some(v) => to_py(py, &v, None),
                    None => Err(not_found(&p)),
                }
            }

            /// A detached deep copy of the value at `path`; records are rebuilt by `build`.
            fn unwrap<'py>(
                &self,
                py: Python<'py>,
                path: &Bound<'py, PyTuple>,
                build: &Bound<'py, PyAny>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let p = path_of(path)?;
                match self.txn()?.get(&p).map_err(err)? {
                    Some(v) => to_py(py, &v, Some(build)),
                    None => Err(not_found(&p)),
                }
            }

            /// Number of entries of the container at `path`.
            fn len(&self, path: &Bound<'_, PyTuple>) -> PyResult<u64> {
                let p = path_of(path)?;
                match self.txn()?.get(&p).map_err(err)? {
                    Some(Value::Dict(d)) => d.len().map_err(corrupt),
                    Some(Value::List(l)) => l.len().map_err(corrupt),
                    Some(Value::Set(s)) | Some(Value::FrozenSet(s)) => s.len().map_err(corrupt),
                    Some(Value::Tuple(t)) => Ok(t.len() as u64),
                    Some(Value::Record(r)) => Ok(r.fields().map_err(corrupt)?.len() as u64),
                    Some(v) => Err(PyTypeError::new_err(format!("a {} has no len()", v.type_name()))),
                    None => Err(not_found(&p)),
                }
            }

            /// The dict's keys, the list's items or the set's elements, in order (as from
            /// `get`: containers as `Nested`); a record's field names.
            fn members<'py>(&self, py: Python<'py>, path: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyList>> {
                let p = path_of(path)?;
                let out = PyList::empty(py);
                match self.txn()?.get(&p).map_err(err)? {
                    Some(Value::Dict(d)) => {
                        for item in d.iter().map_err(corrupt)? {
                            out.append(to_py(py, &item.map_err(corrupt)?.0, None)?)?;
                        }
                    }
                    Some(Value::List(l)) => {
                        for item in l.iter().map_err(corrupt)? {
                            out.append(to_py(py, &item.map_err(corrupt)?, None)?)?;
                        }
                    }
                    Some(Value::Set(s)) => {
                        for item in s.iter().map_err(corrupt)? {
                            out.append(to_py(py, &item.map_err(corrupt)?, None)?)?;
                        }
                    }
                    Some(Value::Record(r)) => {
                        for (k, _) in r.fields().map_err(corrupt)? {
                            out.append(k.as_str())?;
                        }
                    }
                    Some(v) => return Err(PyTypeError::new_err(format!("a {} has no members", v.type_name()))),
                    None => return Err(not_found(&p)),
                }
                Ok(out)
            }

            /// The record's type name.
            fn type_name(&self, path: &Bound<'_, PyTuple>) -> PyResult<String> {
                let p = path_of(path)?;
                match self.txn()?.get(&p).map_err(err)? {
                    Some(Value::Record(r)) => Ok(r.type_name().map_err(corrupt)?.as_str().to_string()),
                    Some(v) => Err(PyTypeError::new_err(format!("a {} is not a record", v.type_name()))),
                    None => Err(not_found(&p)),
                }
            }

            /// Whether `key` is in the dict or set at `path`.
            fn contains(&self, path: &Bound<'_, PyTuple>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
                let p = path_of(path)?;
                let k = match member_key(key)? {
                    Some(k) => k,
                    None => return Ok(false),
                };
                match self.txn()?.get(&p).map_err(err)? {
                    Some(Value::Dict(d)) => Ok(d.get(&k).map_err(corrupt)?.is_some()),
                    Some(Value::Set(s)) | Some(Value::FrozenSet(s)) => s.contains(&k).map_err(corrupt),
                    Some(v) => Err(PyTypeError::new_err(format!("a {} has no members", v.type_name()))),
                    None => Err(not_found(&p)),
                }
            }
        }
    };
}

/// KeyError for an absent `p`, worded as the core's `NotFound` (a proxy whose container is
/// gone reads the same whichever call finds out).
fn not_found(p: &[Key]) -> PyErr {
    err(TxnError::NotFound { path: eterna::txn::render_path(p) })
}

/// Carries a value that is not `Send` (a transaction holds a mutex guard) into and out of
/// `Python::detach`, which runs its closure on the calling thread while the GIL is released.
struct SameThread<T>(T);

// SAFETY: a `SameThread` only ever crosses into a `Python::detach` closure and back out of
// it; `detach` runs the closure synchronously on the thread that called it, so the value
// never is used or dropped on another thread.
unsafe impl<T> Send for SameThread<T> {}

/// An open heap.
#[pyclass(frozen, module = "eterna._eterna")]
struct Db {
    heap: Arc<Heap>, // shared with every snapshot and transaction it began
}

#[pymethods]
impl Db {
    #[new]
    #[pyo3(signature = (path, readonly=false, sync="commit", lock_timeout=None))]
    fn new(
        py: Python<'_>,
        path: &str,
        readonly: bool,
        sync: &str,
        lock_timeout: Option<f64>,
    ) -> PyResult<Db> {
        let durability = match sync {
            "commit" => Durability::Commit,
            "full" => Durability::Full,
            "none" => Durability::None,
            other => {
                return Err(PyValueError::new_err(format!(
                    "sync must be 'commit', 'full' or 'none', not {other:?}"
                )))
            }
        };
        let options = Options {
            readonly,
            create: !readonly,
            durability,
            lock_timeout: lock_timeout.map(Duration::from_secs_f64),
            ..Options::default()
        };
        let path = path.to_string();
        let heap = py.detach(|| Heap::open(&path, options)).map_err(|e| match e {
            eterna::OpenError::Io(e) => PyErr::from(e),
            other => CorruptionError::new_err(other.to_string()),
        })?;
        Ok(Db { heap: Arc::new(heap) })
    }

    /// A snapshot of the last committed state.
    fn read(&self) -> PyResult<Snap> {
        let heap = self.heap.clone();
        let txn = heap.read().map_err(err)?;
        // SAFETY: the snapshot borrows the heap behind `heap`, an Arc that `Snap` keeps in
        // a field declared after `txn`, so it is dropped after the snapshot; an Arc's
        // contents never move. The 'static lifetime never escapes `Snap`.
        let txn = unsafe { std::mem::transmute::<ReadTxn<'_>, ReadTxn<'static>>(txn) };
        Ok(Snap { txn: Some(txn), _heap: heap })
    }

    /// A handle on the last committed state for one short read: a write transaction when
    /// this process already holds the writer's role and no other thread is in one (it is
    /// aborted after the read: no snapshot pin, no second mapping of what the next commit
    /// changes), else a snapshot. End it with `abort()` or `end()`.
    fn latest(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let heap = self.heap.clone();
        let Some(txn) = heap.try_write_now() else {
            return Ok(Py::new(py, self.read()?)?.into_any());
        };
        // SAFETY: as in `write`: the Arc is kept by `Txn` in a field dropped after `txn`,
        // so the heap outlives the transaction.
        let txn = unsafe { std::mem::transmute::<WriteTxn<'_>, WriteTxn<'static>>(txn) };
        let t = Txn { txn: Some(txn), _heap: heap, owner: std::thread::current().id() };
        Ok(Py::new(py, t)?.into_any())
    }

    /// Begins the write transaction (waiting, without the GIL, for another thread's or
    /// process's).
    fn write(&self, py: Python<'_>) -> PyResult<Txn> {
        let heap = self.heap.clone();
        let txn = py.detach(|| SameThread(heap.write())).0.map_err(err)?;
        // SAFETY: as in `read`: the Arc is kept by `Txn` in a field dropped after `txn`.
        let txn = unsafe { std::mem::transmute::<WriteTxn<'_>, WriteTxn<'static>>(txn) };
        Ok(Txn { txn: Some(txn), _heap: heap, owner: std::thread::current().id() })
    }

    /// The counters of `eterna stats`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.heap.stats()).map_err(|e| Error::new_err(e.to_string()))?;
        let d = PyDict::new(py);
        for (k, v) in s.counters() {
            d.set_item(k, v)?;
        }
        let classes = PyList::empty(py);
        for c in &s.size_classes {
            let e = PyDict::new(py);
            e.set_item("size", c.size)?;
            e.set_item("pools", c.pools)?;
            e.set_item("blocks_live", c.blocks_live)?;
            e.set_item("blocks_free", c.blocks_free)?;
            classes.append(e)?;
        }
        d.set_item("size_classes", classes)?;
        let readers = PyList::empty(py);
        for (pid, txn) in &s.reader_list {
            let e = PyDict::new(py);
            e.set_item("pid", pid)?;
            e.set_item("txn", txn)?;
            readers.append(e)?;
        }
        d.set_item("reader_list", readers)?;
        Ok(d)
    }

    /// Runs the collector without the GIL: `kind` is "young", "full" or "compact". Returns
    /// what it did as a dict (the keys of `eterna gc --json`).
    fn collect<'py>(&self, py: Python<'py>, kind: &str) -> PyResult<Bound<'py, PyDict>> {
        let kind = match kind {
            "young" => eterna::gc::Kind::Young,
            "full" => eterna::gc::Kind::Full,
            "compact" => eterna::gc::Kind::Compact,
            other => return Err(PyValueError::new_err(format!("unknown collection kind {other:?}"))),
        };
        let heap = self.heap.clone();
        let r = py.detach(move || SameThread(heap.collect(kind, &mut |_, _, _| {}))).0.map_err(err)?;
        let d = PyDict::new(py);
        d.set_item("compacted", r.compacted)?;
        d.set_item("young", r.young)?;
        for (k, v) in [
            ("objects_traced", r.objects_traced),
            ("bytes_traced", r.bytes_traced),
            ("mark_bytes", r.mark_bytes),
            ("garbage_blocks", r.garbage_blocks),
            ("garbage_bytes", r.garbage_bytes),
            ("moved_blocks", r.moved_blocks),
            ("moved_bytes", r.moved_bytes),
            ("pools_evacuated", r.pools_evacuated),
            ("shared_dropped", r.shared_dropped),
            ("blocks_deferred", r.blocks_deferred),
            ("disk_before", r.disk_before),
            ("disk_after", r.disk_after),
            ("txn_id", r.txn_id),
        ] {
            d.set_item(k, v)?;
        }
        d.set_item("trace_seconds", r.trace_seconds)?;
        d.set_item("seconds", r.seconds)?;
        Ok(d)
    }

    /// `eterna check`: walks the committed state and the allocator's metadata without
    /// writing; raises `CorruptionError` naming the first inconsistency.
    fn check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let path = self.heap.path().to_path_buf();
        let report = py.detach(|| eterna::check::check(&path)).map_err(|e| match e {
            eterna::check::CheckError::Io(e) => PyErr::from(e),
            other => CorruptionError::new_err(other.to_string()),
        })?;
        let d = PyDict::new(py);
        d.set_item("txn_id", report.txn_id)?;
        d.set_item("objects", report.objects)?;
        d.set_item("bytes", report.bytes)?;
        d.set_item("unreachable_blocks", report.unreachable_blocks)?;
        d.set_item("unreachable_bytes", report.unreachable_bytes)?;
        d.set_item("interrupted", report.interrupted)?;
        d.set_item("warnings", report.warnings)?;
        Ok(d)
    }

    /// In a child right after `fork`: closes the child's copy of the parent's writer lock
    /// (the heap stays readable; the Python layer opens its own for writing).
    fn after_fork(&self) {
        self.heap.after_fork();
    }

    /// Publishes a clean state and releases the writer lock and the reader slot.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.heap.shutdown()).map_err(err)
    }
}

/// A snapshot: any thread may read through it.
#[pyclass(module = "eterna._eterna")]
struct Snap {
    txn: Option<ReadTxn<'static>>, // dropped before `_heap`
    _heap: Arc<Heap>,
}

impl Snap {
    fn txn(&self) -> PyResult<&ReadTxn<'static>> {
        self.txn.as_ref().ok_or_else(|| Error::new_err("this snapshot has ended"))
    }
}

/// The member `key` of container `v`: a dict's value, a list's or tuple's item, a record's
/// field.
fn member<'t>(v: &Value<'t>, key: &Bound<'_, PyAny>) -> PyResult<Option<Value<'t>>> {
    let index = || -> PyResult<i64> { key.extract::<i64>() };
    Ok(match v {
        Value::Dict(d) => match key_of(key, "a key") {
            Ok(k) => d.get(&k).map_err(corrupt)?,
            Err(e) => return Err(e),
        },
        Value::List(l) => l.get(index()?).map_err(corrupt)?,
        Value::Tuple(t) => {
            let items = t.items().map_err(corrupt)?;
            let i = index()?;
            let i = if i < 0 { i + items.len() as i64 } else { i };
            (0..items.len() as i64).contains(&i).then(|| items[i as usize])
        }
        Value::Record(r) => r.get(&key.extract::<String>()?).map_err(corrupt)?,
        other => return Err(PyTypeError::new_err(format!("a {} has no members", other.type_name()))),
    })
}

reads!(Snap, {
    /// Ends the snapshot (what it pins may be reused).
    fn end(&mut self) {
        self.txn = None;
    }

    /// The root dict's offset: with the `*_in` methods, a handle on a container that needs
    /// no path (a snapshot's containers never move).
    fn root_offset(&self) -> PyResult<u64> {
        Ok(self.txn()?.root().map_err(err)?.offset())
    }

    /// `get` of the member `key` of the container at `offset`.
    fn get_in<'py>(
        &self,
        py: Python<'py>,
        offset: u64,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.txn()?.container_at(offset).map_err(err)?;
        match member(&c, key)? {
            Some(v) => to_py(py, &v, None),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// `len` of the container at `offset`.
    fn len_in(&self, offset: u64) -> PyResult<u64> {
        match self.txn()?.container_at(offset).map_err(err)? {
            Value::Dict(d) => d.len().map_err(corrupt),
            Value::List(l) => l.len().map_err(corrupt),
            Value::Set(s) | Value::FrozenSet(s) => s.len().map_err(corrupt),
            Value::Tuple(t) => Ok(t.len() as u64),
            Value::Record(r) => Ok(r.fields().map_err(corrupt)?.len() as u64),
            v => Err(PyTypeError::new_err(format!("a {} has no len()", v.type_name()))),
        }
    }

    /// Up to `count` keys of the dict (or items of the list) at `offset`, from position
    /// `start` on, and the position to go on from: iteration without copying it all.
    fn chunk_in<'py>(
        &self,
        py: Python<'py>,
        offset: u64,
        start: u64,
        count: u64,
    ) -> PyResult<(Bound<'py, PyList>, u64)> {
        let out = PyList::empty(py);
        let mut next = start;
        match self.txn()?.container_at(offset).map_err(err)? {
            Value::Dict(d) => {
                for item in d.iter_from(start).map_err(corrupt)?.take(count as usize) {
                    let (pos, k, _) = item.map_err(corrupt)?;
                    out.append(to_py(py, &k, None)?)?;
                    next = pos + 1;
                }
            }
            Value::List(l) => {
                let end = (start + count).min(l.len().map_err(corrupt)?);
                for i in start..end {
                    if let Some(v) = l.get(i as i64).map_err(corrupt)? {
                        out.append(to_py(py, &v, None)?)?;
                    }
                }
                next = end;
            }
            v => return Err(PyTypeError::new_err(format!("a {} is not iterated in chunks", v.type_name()))),
        }
        Ok((out, next))
    }
});

/// The proxy classes (`eterna.Dict`, `List`, `Set`, `Record`), by kind, the function that
/// rebuilds a record detached from the heap, and the one that turns any other value into a
/// storable one (`records` of `Txn.set`), which the Python package registers when it is
/// imported.
static KINDS: pyo3::sync::PyOnceLock<[Py<PyAny>; 6]> = pyo3::sync::PyOnceLock::new();

/// Where `KINDS` keeps the record builder and the value converter.
const BUILD: usize = 4;
const PLAIN: usize = 5;

/// Registers the proxy classes that containers read back are wrapped in, and the record
/// builder for records inside tuples (which come back detached, like the tuple).
#[pyfunction]
fn _register_proxies(
    py: Python<'_>,
    dict: Py<PyAny>,
    list: Py<PyAny>,
    set: Py<PyAny>,
    record: Py<PyAny>,
    build: Py<PyAny>,
    plain: Py<PyAny>,
) {
    // A second import (in a subinterpreter, say) keeps the first registration.
    let _ = KINDS.set(py, [dict, list, set, record, build, plain]);
}

/// The base of the Python proxies: where a container is. `h` is the transaction or snapshot
/// the proxy belongs to (None: each access uses its own), `path` its keys from the root, and
/// in a snapshot `off` its offset (a snapshot's containers never move). The hot operations
/// of a dict (`d[k]`, `k in d`, `len(d)`, and in a transaction `d[k] = v`, `del d[k]`) run
/// here in one native call inside a transaction or snapshot; everything else, and every
/// access outside one, is the Python subclass's (`_getitem`, `_contains`, `_len`,
/// `_setitem`, `_delitem`).
#[pyclass(subclass, frozen, module = "eterna._eterna")]
struct Proxy {
    #[pyo3(get, name = "_db")]
    db: Py<PyAny>, // the eterna.Database
    #[pyo3(get, name = "_h")]
    h: Py<PyAny>, // None, a Snap or a Txn
    #[pyo3(get, name = "_path")]
    path: Py<PyTuple>, // keys from the root
    #[pyo3(get, name = "_off")]
    off: Option<u64>, // in a snapshot, the container's offset
}

impl Proxy {
    /// The proxy of the container `nested`, the member `key` of this one.
    fn wrap<'py>(
        &self,
        py: Python<'py>,
        nested: &Nested,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kinds =
            KINDS.get(py).ok_or_else(|| Error::new_err("eterna's proxy classes are not registered"))?;
        let cls = match nested.kind {
            "dict" => &kinds[0],
            "list" => &kinds[1],
            "set" => &kinds[2],
            _ => &kinds[3],
        };
        let path = self.path.bind(py);
        let mut items: Vec<Bound<'py, PyAny>> = Vec::with_capacity(path.len() + 1);
        items.extend(path.iter());
        items.push(key.clone());
        let child = PyTuple::new(py, items)?;
        let off = self.off.map(|_| nested.offset);
        cls.bind(py).call1((self.db.clone_ref(py), self.h.clone_ref(py), child, off))
    }

    /// A value read as `to_py` gave it, a container wrapped in its proxy.
    fn wrap_value<'py>(&self, v: Bound<'py, PyAny>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match v.cast::<Nested>() {
            Ok(n) => self.wrap(v.py(), n.get(), key),
            Err(_) => Ok(v),
        }
    }
}

#[pymethods]
impl Proxy {
    #[new]
    #[pyo3(signature = (db, handle, path, off=None))]
    fn new(db: Py<PyAny>, handle: Py<PyAny>, path: Py<PyTuple>, off: Option<u64>) -> Proxy {
        Proxy { db, h: handle, path, off }
    }

    /// A dict's `d[key]`.
    fn __getitem__<'py>(slf: &Bound<'py, Self>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let me = slf.get();
        let h = me.h.bind(py);
        if let (Some(off), Ok(snap)) = (me.off, h.cast::<Snap>()) {
            let snap = snap.try_borrow()?;
            let c = snap.txn()?.container_at(off).map_err(err)?;
            let Value::Dict(d) = c else {
                return slf.call_method1("_getitem", (key,));
            };
            return match d.get(&key_of(key, "a key")?).map_err(corrupt)? {
                Some(v) => me.wrap_value(to_py(py, &v, None)?, key),
                None => Err(PyKeyError::new_err(key.clone().unbind())),
            };
        }
        if let Ok(txn) = h.cast::<Txn>() {
            let mut p = path_of(me.path.bind(py))?;
            p.push(key_owned(key, "a key")?);
            let txn = txn.try_borrow()?;
            let found = txn.txn()?.get(&p).map_err(err);
            return match found {
                Ok(Some(v)) => me.wrap_value(to_py(py, &v, None)?, key),
                Ok(None) => Err(PyKeyError::new_err(key.clone().unbind())),
                // Not a dict (the Python layer words the error), or a real failure.
                Err(_) => slf.call_method1("_getitem", (key,)),
            };
        }
        slf.call_method1("_getitem", (key,))
    }

    /// A dict's `d[key] = value`: in a transaction, stored at once (a proxy as the value,
    /// which may be stored by reference, is left to the Python layer).
    fn __setitem__(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let h = me.h.bind(py);
        let (Ok(txn), Err(_), Some(kinds)) = (h.cast::<Txn>(), value.cast::<Proxy>(), KINDS.get(py)) else {
            return slf.call_method1("_setitem", (key, value)).map(drop);
        };
        let mut p = path_of(me.path.bind(py))?;
        p.push(key_owned(key, "a key")?);
        let mut at = At::new(&p);
        // Converted before the transaction is borrowed (see `Txn::set`).
        let input = input_of(value, &mut at, kinds[PLAIN].bind(py))?;
        let result = txn.try_borrow_mut()?.txn_mut()?.set(&p, &input);
        match result {
            Ok(()) => Ok(()),
            // Not a dict any more, or a record without that field: the Python layer words it.
            Err(TxnError::WrongType { .. } | TxnError::NotFound { .. }) => {
                slf.call_method1("_setitem", (key, value)).map(drop)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// A dict's `del d[key]`: in a transaction, deleted at once.
    fn __delitem__(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let Ok(txn) = me.h.bind(py).cast::<Txn>() else {
            return slf.call_method1("_delitem", (key,)).map(drop);
        };
        let mut p = path_of(me.path.bind(py))?;
        p.push(key_owned(key, "a key")?);
        let result = txn.try_borrow_mut()?.txn_mut()?.del(&p);
        match result {
            Ok(()) => Ok(()),
            Err(TxnError::NotFound { .. }) => Err(PyKeyError::new_err(key.clone().unbind())),
            Err(TxnError::WrongType { .. }) => slf.call_method1("_delitem", (key,)).map(drop),
            Err(e) => Err(err(e)),
        }
    }

    /// `key in d` for a dict or set.
    fn __contains__(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = slf.py();
        let me = slf.get();
        if let (Some(off), Ok(snap)) = (me.off, me.h.bind(py).cast::<Snap>()) {
            let Some(k) = member_key(key)? else {
                return Ok(false);
            };
            match snap.try_borrow()?.txn()?.container_at(off).map_err(err)? {
                Value::Dict(d) => return Ok(d.get(&k).map_err(corrupt)?.is_some()),
                Value::Set(s) | Value::FrozenSet(s) => return s.contains(&k).map_err(corrupt),
                _ => {}
            }
        }
        slf.call_method1("_contains", (key,))?.extract()
    }

    /// `len()` of the container.
    fn __len__(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let py = slf.py();
        let me = slf.get();
        if let (Some(off), Ok(snap)) = (me.off, me.h.bind(py).cast::<Snap>()) {
            return Ok(snap.try_borrow()?.len_in(off)? as usize);
        }
        slf.call_method0("_len")?.extract()
    }
}

/// The write transaction. It holds this process's writer mutex, which only the thread that
/// locked it may unlock, so only that thread may use or end it: another thread gets an
/// `eterna.Error` (not a panic, as an `unsendable` class would give).
#[pyclass(module = "eterna._eterna")]
struct Txn {
    txn: Option<WriteTxn<'static>>, // dropped before `_heap`
    _heap: Arc<Heap>,
    owner: ThreadId, // the thread that began it
}

// SAFETY: `Txn` is not `Send` only because its `WriteTxn` holds a `MutexGuard`, which must
// be used and released on the thread that locked it (`owner`). Every access to `txn` goes
// through `txn`, `txn_mut` or `take`, which refuse any other thread, and `Drop` leaks a
// transaction that is still running when the object dies on another thread instead of
// releasing it there. `_heap` is an `Arc<Heap>`, itself `Send + Sync`.
unsafe impl Send for Txn {}
// SAFETY: as for `Send`: shared access from another thread reaches nothing but the
// `owner` check.
unsafe impl Sync for Txn {}

impl Txn {
    fn check(&self) -> PyResult<()> {
        if std::thread::current().id() == self.owner {
            return Ok(());
        }
        Err(Error::new_err(
            "this transaction belongs to the thread that began it; \
             other threads use their own transaction or proxies from outside a `with` block",
        ))
    }
    fn txn(&self) -> PyResult<&WriteTxn<'static>> {
        self.check()?;
        self.txn.as_ref().ok_or_else(|| Error::new_err("this transaction has ended"))
    }
    fn txn_mut(&mut self) -> PyResult<&mut WriteTxn<'static>> {
        self.check()?;
        self.txn.as_mut().ok_or_else(|| Error::new_err("this transaction has ended"))
    }
    fn take(&mut self) -> PyResult<Option<WriteTxn<'static>>> {
        self.check()?;
        Ok(self.txn.take())
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        if let Some(txn) = self.txn.take() {
            if std::thread::current().id() == self.owner {
                drop(txn); // aborts
            } else {
                // Releasing the writer mutex here would break its contract; the process's
                // later write transactions wait (or time out), as with any lost lock.
                std::mem::forget(txn);
            }
        }
    }
}

reads!(Txn, {
    /// Stores `value` at `path`; `records` turns anything else into a plain value, a
    /// record `(type name, [(field, value)])`, or None (unsupported).
    fn set(
        slf: &Bound<'_, Self>,
        path: &Bound<'_, PyTuple>,
        value: &Bound<'_, PyAny>,
        records: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let p = path_of(path)?;
        let mut at = At::new(&p);
        // Converted before the transaction is borrowed: `records` may read a proxy of this
        // same transaction (a value that holds one is stored as a copy of it).
        let input = input_of(value, &mut at, records)?;
        slf.try_borrow_mut()?.txn_mut()?.set(&p, &input).map_err(err)
    }

    /// Stores at `dst` the value at `src` of this transaction, by reference.
    fn share(&mut self, dst: &Bound<'_, PyTuple>, src: &Bound<'_, PyTuple>) -> PyResult<()> {
        let (d, s) = (path_of(dst)?, path_of(src)?);
        let txn = self.txn_mut()?;
        let input = txn.share(&s).map_err(err)?.ok_or_else(|| not_found(&s))?;
        txn.set(&d, &input).map_err(err)
    }

    /// Deletes the dict key, list item or set element at `path`.
    fn delete(&mut self, path: &Bound<'_, PyTuple>) -> PyResult<()> {
        let p = path_of(path)?;
        self.txn_mut()?.del(&p).map_err(err)
    }

    /// Replaces `count` items of the list at `path` from `start` with `values`.
    fn splice(
        slf: &Bound<'_, Self>,
        path: &Bound<'_, PyTuple>,
        start: u64,
        count: u64,
        values: &Bound<'_, PyList>,
        records: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let p = path_of(path)?;
        let mut at = At::new(&p);
        let mut items = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            at.segs.push(Seg::Index(start as usize + i));
            let item = input_of(&v, &mut at, records);
            at.segs.pop();
            items.push(item?);
        }
        // As in `set`: converted before the transaction is borrowed.
        slf.try_borrow_mut()?.txn_mut()?.splice(&p, start, count, &items).map_err(err)
    }

    /// Adds `key` to the set at `path`.
    fn add(&mut self, path: &Bound<'_, PyTuple>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let p = path_of(path)?;
        let k = key_of(key, "a set element")?;
        self.txn_mut()?.set_add(&p, &k).map_err(err)
    }

    /// Commits (syncing without the GIL).
    fn commit(&mut self, py: Python<'_>) -> PyResult<u64> {
        let txn = SameThread(self.take()?.ok_or_else(|| Error::new_err("this transaction has ended"))?);
        py.detach(move || {
            let txn = txn;
            txn.0.commit()
        })
        .map_err(err)
    }

    /// Aborts: nothing of this transaction is kept.
    fn abort(&mut self) -> PyResult<()> {
        drop(self.take()?);
        Ok(())
    }

    /// The same as `abort`, under a snapshot's name, for a handle from `Db.latest()`.
    fn end(&mut self) -> PyResult<()> {
        self.abort()
    }
});

#[pymodule]
fn _eterna(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Db>()?;
    m.add_class::<Snap>()?;
    m.add_class::<Txn>()?;
    m.add_class::<Nested>()?;
    m.add_class::<Proxy>()?;
    m.add_function(wrap_pyfunction!(_register_proxies, m)?)?;
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("CorruptionError", py.get_type::<CorruptionError>())?;
    m.add("LockTimeout", py.get_type::<LockTimeout>())?;
    m.add("ReadOnlyError", py.get_type::<ReadOnlyError>())?;
    Ok(())
}
