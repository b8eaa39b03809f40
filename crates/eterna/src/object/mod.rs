//! Layer 3: the value encoding. Scalars inline in tagged words, everything else heap
//! objects addressed by offset; dicts, lists and sets as persistent structures whose
//! changes copy a path.

mod build;
pub mod champ;
pub mod key;
pub mod layout;
mod offsets;
mod ops;
pub mod rope;
pub mod store;
pub mod value;
pub mod vector;
pub mod walk;
pub mod word;

pub use build::{build, Input, InputError, StrPairs};
pub(crate) use build::{list_image, trie_order};
pub use key::Key;
pub use offsets::{OffsetHasher, OffsetSet};
pub use ops::{
    container_del, container_get, container_set, dict_new, key_input, list_splice, set_add, ContainerError,
};
pub use value::{Bytes, Ctx, Dict, List, Record, Set, Str, Tuple, Value};
pub use word::Word;

use crate::error::Corruption;

/// The hash-trie root of the set or frozenset at `off`.
pub fn set_root(mem: &[u8], off: u64) -> Result<Word, Corruption> {
    value::header_word(mem, off, layout::SET_ROOT)
}
