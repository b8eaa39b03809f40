//! The tagged 64-bit word every value slot holds: small scalars inline, everything else a
//! reference (the file offset of a heap object, a multiple of 16).
//!
//! Low two bits:
//! - `00`: a reference; the word is the object's offset. `0` is the empty slot.
//! - `01`: an integer in `[-2^61, 2^61)`, shifted left by two.
//! - `10`: a float whose exponent lies in `[2^-255, 2^256)` ("flonum", after Ruby), or +0.0.
//! - `11`: an immediate, told apart by bits 2..4: `0011` None/False/True, `0111` a str of at
//!   most 7 UTF-8 bytes, `1011` bytes of at most 7, with the length in bits 4..7 and the
//!   bytes in bits 8..64.

/// One value slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Word(pub u64);

const TAG_INT: u64 = 0b01;
const TAG_FLOAT: u64 = 0b10;
const IMM_SINGLETON: u64 = 0b0011;
const IMM_STR: u64 = 0b0111;
const IMM_BYTES: u64 = 0b1011;

/// Smallest and largest integers held inline.
pub const INLINE_INT_MIN: i64 = -(1 << 61);
pub const INLINE_INT_MAX: i64 = (1 << 61) - 1;
/// Longest str or bytes held inline.
pub const INLINE_MAX: usize = 7;

/// What a word holds, without following references.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Imm {
    /// The empty slot.
    Empty,
    /// A heap object at this offset.
    Ref(u64),
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Inline str: bytes and length.
    Str([u8; 8], u8),
    /// Inline bytes: bytes and length.
    Bytes([u8; 8], u8),
    /// A tag no version of eterna writes: the file is corrupt.
    Invalid,
}

impl std::fmt::Debug for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Word({:#x} = {:?})", self.0, self.decode())
    }
}

impl Word {
    pub const EMPTY: Word = Word(0);
    pub const NONE: Word = Word(IMM_SINGLETON);
    pub const FALSE: Word = Word(IMM_SINGLETON | 1 << 4);
    pub const TRUE: Word = Word(IMM_SINGLETON | 2 << 4);

    /// A reference to the object at `off` (a non-zero multiple of 16).
    pub fn reference(off: u64) -> Word {
        debug_assert!(off != 0 && off % 16 == 0);
        Word(off)
    }

    /// An inline integer, if `v` fits.
    pub fn int(v: i64) -> Option<Word> {
        (INLINE_INT_MIN..=INLINE_INT_MAX).contains(&v).then_some(Word(((v as u64) << 2) | TAG_INT))
    }

    /// A bool.
    pub fn bool(b: bool) -> Word {
        if b {
            Word::TRUE
        } else {
            Word::FALSE
        }
    }

    /// An inline float, if `v` is +0.0 or its exponent is in range.
    pub fn float(v: f64) -> Option<Word> {
        let b = v.to_bits();
        if b == 0 {
            return Some(Word(TAG_FLOAT));
        }
        let sign = b >> 63;
        let exp = (b >> 52) & 0x7ff;
        let sel = match exp >> 8 {
            3 => 0,
            4 => 1,
            _ => return None,
        };
        let payload = sign << 61 | sel << 60 | (exp & 0xff) << 52 | (b & ((1 << 52) - 1));
        // Payload zero stands for +0.0; the one float that would also encode to it is boxed.
        (payload != 0).then_some(Word(payload << 2 | TAG_FLOAT))
    }

    /// An inline str or bytes, if at most 7 bytes.
    fn short(tag: u64, s: &[u8]) -> Option<Word> {
        if s.len() > INLINE_MAX {
            return None;
        }
        let mut b = [0u8; 8];
        b[1..1 + s.len()].copy_from_slice(s);
        Some(Word(u64::from_le_bytes(b) | (s.len() as u64) << 4 | tag))
    }

    /// An inline str, if at most 7 bytes.
    pub fn short_str(s: &str) -> Option<Word> {
        Word::short(IMM_STR, s.as_bytes())
    }

    /// Inline bytes, if at most 7.
    pub fn short_bytes(s: &[u8]) -> Option<Word> {
        Word::short(IMM_BYTES, s)
    }

    /// Whether the word is a reference to a heap object.
    #[inline]
    pub fn is_ref(self) -> bool {
        self.0 & 0b11 == 0 && self.0 != 0
    }

    /// The referenced offset, if the word is a reference.
    #[inline]
    pub fn as_ref(self) -> Option<u64> {
        self.is_ref().then_some(self.0)
    }

    /// Decodes the word.
    pub fn decode(self) -> Imm {
        let w = self.0;
        match w & 0b11 {
            0 if w == 0 => Imm::Empty,
            0 if w % 16 == 0 => Imm::Ref(w),
            0 => Imm::Invalid,
            TAG_INT => Imm::Int((w as i64) >> 2),
            TAG_FLOAT => {
                let p = w >> 2;
                if p == 0 {
                    return Imm::Float(0.0);
                }
                let sign = p >> 61;
                let exp = (3 + ((p >> 60) & 1)) << 8 | ((p >> 52) & 0xff);
                Imm::Float(f64::from_bits(sign << 63 | exp << 52 | (p & ((1 << 52) - 1))))
            }
            _ => {
                let len = ((w >> 4) & 0xf) as u8;
                match w & 0xf {
                    IMM_SINGLETON => match w >> 4 {
                        0 => Imm::None,
                        1 => Imm::Bool(false),
                        2 => Imm::Bool(true),
                        _ => Imm::Invalid,
                    },
                    IMM_STR | IMM_BYTES if len as usize <= INLINE_MAX => {
                        let mut b = [0u8; 8];
                        let all = w.to_le_bytes();
                        b[..len as usize].copy_from_slice(&all[1..1 + len as usize]);
                        if all[1 + len as usize..].iter().any(|&x| x != 0) {
                            return Imm::Invalid;
                        }
                        if w & 0xf == IMM_STR {
                            Imm::Str(b, len)
                        } else {
                            Imm::Bytes(b, len)
                        }
                    }
                    _ => Imm::Invalid,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_round_trip_at_the_edges() {
        for v in [0, 1, -1, 42, INLINE_INT_MIN, INLINE_INT_MAX, -12345678901] {
            assert_eq!(Word::int(v).unwrap().decode(), Imm::Int(v));
        }
        assert!(Word::int(INLINE_INT_MAX + 1).is_none());
        assert!(Word::int(INLINE_INT_MIN - 1).is_none());
    }

    #[test]
    fn floats_round_trip_or_box() {
        for v in [0.0, 1.0, -1.0, 2.5, 0.1, 1e10, -3.75e-40, 1e76, 123456.789] {
            let w = Word::float(v).unwrap_or_else(|| panic!("{v} should be inline"));
            assert_eq!(w.decode(), Imm::Float(v));
        }
        for v in [-0.0, f64::NAN, f64::INFINITY, 1e300, 1e-300, 2f64.powi(-255)] {
            assert!(Word::float(v).is_none(), "{v} should be boxed");
        }
    }

    #[test]
    fn immediates() {
        assert_eq!(Word::NONE.decode(), Imm::None);
        assert_eq!(Word::TRUE.decode(), Imm::Bool(true));
        assert_eq!(Word::FALSE.decode(), Imm::Bool(false));
        assert_eq!(Word::EMPTY.decode(), Imm::Empty);
        let s = Word::short_str("héllo").unwrap();
        match s.decode() {
            Imm::Str(b, n) => assert_eq!(&b[..n as usize], "héllo".as_bytes()),
            other => panic!("{other:?}"),
        }
        assert!(Word::short_str("eight ch").is_none());
        assert_eq!(Word::short_bytes(b"").unwrap().decode(), Imm::Bytes([0; 8], 0));
        assert_eq!(Word(0x20).decode(), Imm::Ref(0x20));
        assert_eq!(Word(0x24).decode(), Imm::Invalid);
        assert_eq!(Word(0xf3 | 5 << 8).decode(), Imm::Invalid);
    }
}
