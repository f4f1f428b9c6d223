//! `WasmSignature`: the one canonical signature string shared by compiler, runtime and thunk
//! keys, and the wasm function type it stands for.
//!
//! Grammar (DESIGN.md section 3; crossgen2's "Wasm Signature String Encoding"):
//!
//! ```text
//! sig   := ret ['T'] [ctx] ['a'] param* ['p']
//! ret   := 'v' | 'S' N | vt          S<N>: struct returned via a buffer, N = size in bytes
//! param := vt | 'S' N | 'A' N | 'e'  S<N>: struct by reference; A<N>: same, alignment > 8;
//!                                    e: empty struct (passes nothing)
//! vt    := 'i' | 'l' | 'f' | 'd' | 'V'   i32 i64 f32 f64 v128
//! ```
//!
//! `T`: has `this`; ctx: hidden generic context (the pointer character, `i` on wasm32);
//! `a`: async continuation; `p`: managed call (the stack-pointer and portable-entry-point
//! parameters are present). Thunk keys prefix `I` (R2R -> interpreter) or `M` (interpreter
//! -> R2R).
//!
//! The generic context is a pointer-typed argument in the string. Written without a
//! following `a`, it reads back as a first pointer parameter: the two signatures have the
//! same string and the same wasm function type, and they are equal, because equality is by
//! string. (crossgen2 writes the async continuation as `i` too, which makes its strings
//! ambiguous; `a` is ours.)
//!
//! Wasm function types: managed `[SP, this?, retbuf?, ctx?, cont?, params.., PE] -> [ret?]`;
//! unmanaged `[retbuf?, ctx?, cont?, params..] -> [ret?]`. `this` always precedes the return
//! buffer, in both thunk directions.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};

use super::{PointerWidth, WasmValueType};

/// How a signature returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReturnAbi {
    /// Nothing (`v`).
    Void,
    /// One wasm value.
    Value(WasmValueType),
    /// A struct of `size` bytes through a hidden return buffer (`S<N>`); the function returns
    /// nothing.
    Buffer {
        /// Size in bytes.
        size: u32,
    },
}

/// How one parameter travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamAbi {
    /// One wasm value.
    Value(WasmValueType),
    /// A pointer to a struct copy of `size` bytes (`S<N>`), alignment at most 8.
    ByRef {
        /// Size in bytes.
        size: u32,
    },
    /// Same, for a struct aligned beyond 8 bytes (`A<N>`).
    ByRefOverAligned {
        /// Size in bytes.
        size: u32,
    },
    /// An empty struct: no wasm parameter (`e`).
    Empty,
}

/// The direction of a string-discoverable thunk, and its key prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThunkDirection {
    /// R2R code calling a method that only the interpreter can run (`I`).
    R2RToInterpreter,
    /// The interpreter calling R2R code (`M`).
    InterpreterToR2R,
}

impl ThunkDirection {
    /// The key prefix.
    pub fn prefix(self) -> char {
        match self {
            ThunkDirection::R2RToInterpreter => 'I',
            ThunkDirection::InterpreterToR2R => 'M',
        }
    }
}

/// A wasm function type: parameter and result value types.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WasmFuncType {
    /// Parameters, in order.
    pub params: Vec<WasmValueType>,
    /// Results (zero or one).
    pub results: Vec<WasmValueType>,
}

impl fmt::Display for WasmFuncType {
    /// `[i32 i32] -> [i32]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[WasmValueType]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        write!(f, "[{}] -> [{}]", list(&self.params), list(&self.results))
    }
}

/// The parts of a signature, before it is canonicalized into a [`WasmSignature`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SignatureParts {
    /// How it returns.
    pub ret: ReturnAbi,
    /// Whether it has `this` (managed calls only).
    pub has_this: bool,
    /// Whether it takes a hidden generic context.
    pub generic_context: bool,
    /// Whether it takes an async continuation.
    pub async_continuation: bool,
    /// Explicit parameters.
    pub params: Vec<ParamAbi>,
    /// Managed call (`p`): SP and PE parameters present. `false` for `UnmanagedCallersOnly`
    /// methods and unmanaged calls.
    pub managed: bool,
}

/// A canonical wasm signature. `Eq`, `Ord` and `Hash` go by the signature string (then the
/// pointer width), so equal strings are one signature, one thunk, one type.
#[derive(Clone, Debug)]
pub struct WasmSignature {
    pointer: PointerWidth,
    parts: SignatureParts,
    text: Box<str>,
}

/// A signature that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// `this` on an unmanaged signature (`UnmanagedCallersOnly` methods are static).
    #[error("signature {text:?}: `this` requires a managed call (`p`)")]
    ThisOnUnmanaged {
        /// The signature string.
        text: String,
    },
    /// A struct size of zero (an empty struct is `e`, or a `v` return).
    #[error("signature {text:?}: struct size 0 (use `e` for an empty struct)")]
    ZeroSize {
        /// The signature string.
        text: String,
    },
}

/// What is wrong at a position of a signature string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The string is empty.
    Empty,
    /// A character that is not allowed here.
    Unexpected(char),
    /// `S`/`A` not followed by a decimal size.
    MissingSize,
    /// A size with a leading zero, or zero (not canonical).
    NonCanonicalSize,
    /// A size above `u32::MAX`.
    SizeTooLarge,
    /// Characters after the final `p`.
    TrailingCharacters,
    /// `T` without `p`.
    ThisOnUnmanaged,
    /// A thunk key without its `I`/`M` prefix.
    MissingKeyPrefix,
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::Empty => f.write_str("empty signature"),
            ParseErrorKind::Unexpected(c) => write!(f, "unexpected {c:?}"),
            ParseErrorKind::MissingSize => f.write_str("expected a decimal size after S or A"),
            ParseErrorKind::NonCanonicalSize => {
                f.write_str("size must be positive, without leading zeros")
            }
            ParseErrorKind::SizeTooLarge => f.write_str("size exceeds u32::MAX"),
            ParseErrorKind::TrailingCharacters => f.write_str("characters after the final 'p'"),
            ParseErrorKind::ThisOnUnmanaged => f.write_str("'T' requires a managed call ('p')"),
            ParseErrorKind::MissingKeyPrefix => f.write_str("thunk key must start with I or M"),
        }
    }
}

/// A malformed signature string, with the byte offset of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature {input:?} at byte {offset}: {kind}")]
pub struct SignatureParseError {
    /// The whole input.
    pub input: String,
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

impl WasmSignature {
    /// Canonicalizes `parts` for a `pointer`-wide target.
    ///
    /// # Errors
    /// [`SignatureError::ThisOnUnmanaged`], [`SignatureError::ZeroSize`].
    pub fn new(pointer: PointerWidth, parts: SignatureParts) -> Result<Self, SignatureError> {
        let text = encode(pointer, &parts);
        if parts.has_this && !parts.managed {
            return Err(SignatureError::ThisOnUnmanaged { text });
        }
        let zero = matches!(parts.ret, ReturnAbi::Buffer { size: 0 })
            || parts.params.iter().any(|p| {
                matches!(
                    p,
                    ParamAbi::ByRef { size: 0 } | ParamAbi::ByRefOverAligned { size: 0 }
                )
            });
        if zero {
            return Err(SignatureError::ZeroSize { text });
        }
        Ok(WasmSignature {
            pointer,
            parts,
            text: text.into_boxed_str(),
        })
    }

    /// Raises a signature string back to a signature (crossgen2 `RaiseSignature`).
    ///
    /// # Errors
    /// [`SignatureParseError`] with the byte offset of the first problem.
    pub fn parse(text: &str, pointer: PointerWidth) -> Result<Self, SignatureParseError> {
        let parts = parse_parts(text, pointer)?;
        // The parser enforces what `new` checks, so this cannot fail.
        WasmSignature::new(pointer, parts).map_err(|_| SignatureParseError {
            input: text.to_string(),
            offset: 0,
            kind: ParseErrorKind::ThisOnUnmanaged,
        })
    }

    /// Parses a thunk key (`I...` or `M...`).
    ///
    /// # Errors
    /// [`SignatureParseError`]; offsets count the prefix.
    pub fn parse_thunk_key(
        key: &str,
        pointer: PointerWidth,
    ) -> Result<(ThunkDirection, Self), SignatureParseError> {
        let direction = match key.chars().next() {
            Some('I') => ThunkDirection::R2RToInterpreter,
            Some('M') => ThunkDirection::InterpreterToR2R,
            _ => {
                return Err(SignatureParseError {
                    input: key.to_string(),
                    offset: 0,
                    kind: ParseErrorKind::MissingKeyPrefix,
                });
            }
        };
        WasmSignature::parse(&key[1..], pointer)
            .map(|sig| (direction, sig))
            .map_err(|e| SignatureParseError {
                input: key.to_string(),
                offset: e.offset + 1,
                kind: e.kind,
            })
    }

    /// The canonical string.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The thunk key: direction prefix + string.
    pub fn thunk_key(&self, direction: ThunkDirection) -> String {
        let mut key = String::with_capacity(self.text.len() + 1);
        key.push(direction.prefix());
        key.push_str(&self.text);
        key
    }

    /// The parts.
    pub fn parts(&self) -> &SignatureParts {
        &self.parts
    }

    /// The target pointer width.
    pub fn pointer(&self) -> PointerWidth {
        self.pointer
    }

    /// The wasm function type (see the module docs for the parameter order).
    pub fn func_type(&self) -> WasmFuncType {
        let ptr = self.pointer.value_type();
        let p = &self.parts;
        let mut params = Vec::with_capacity(p.params.len() + 6);
        if p.managed {
            params.push(ptr); // SP
            if p.has_this {
                params.push(ptr);
            }
        }
        if matches!(p.ret, ReturnAbi::Buffer { .. }) {
            params.push(ptr);
        }
        if p.generic_context {
            params.push(ptr);
        }
        if p.async_continuation {
            params.push(ptr);
        }
        for param in &p.params {
            match param {
                ParamAbi::Value(v) => params.push(*v),
                ParamAbi::ByRef { .. } | ParamAbi::ByRefOverAligned { .. } => params.push(ptr),
                ParamAbi::Empty => {}
            }
        }
        if p.managed {
            params.push(ptr); // portable entry point
        }
        let results = match p.ret {
            ReturnAbi::Value(v) => vec![v],
            ReturnAbi::Void | ReturnAbi::Buffer { .. } => Vec::new(),
        };
        WasmFuncType { params, results }
    }
}

impl fmt::Display for WasmSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for WasmSignature {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.pointer == other.pointer
    }
}

impl Eq for WasmSignature {}

impl Hash for WasmSignature {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
        self.pointer.hash(state);
    }
}

impl PartialOrd for WasmSignature {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WasmSignature {
    fn cmp(&self, other: &Self) -> Ordering {
        self.text
            .cmp(&other.text)
            .then(self.pointer.cmp(&other.pointer))
    }
}

fn encode(pointer: PointerWidth, p: &SignatureParts) -> String {
    let mut s = String::with_capacity(p.params.len() + 8);
    match p.ret {
        ReturnAbi::Void => s.push('v'),
        ReturnAbi::Value(v) => s.push(v.sig_char()),
        ReturnAbi::Buffer { size } => {
            let _ = write!(s, "S{size}");
        }
    }
    if p.has_this {
        s.push('T');
    }
    if p.generic_context {
        s.push(pointer.value_type().sig_char());
    }
    if p.async_continuation {
        s.push('a');
    }
    for param in &p.params {
        match param {
            ParamAbi::Value(v) => s.push(v.sig_char()),
            ParamAbi::ByRef { size } => {
                let _ = write!(s, "S{size}");
            }
            ParamAbi::ByRefOverAligned { size } => {
                let _ = write!(s, "A{size}");
            }
            ParamAbi::Empty => s.push('e'),
        }
    }
    if p.managed {
        s.push('p');
    }
    s
}

fn parse_parts(text: &str, pointer: PointerWidth) -> Result<SignatureParts, SignatureParseError> {
    let bytes = text.as_bytes();
    let fail = |offset: usize, kind| SignatureParseError {
        input: text.to_string(),
        offset,
        kind,
    };
    let unexpected = |offset: usize| {
        let c = text[offset..].chars().next().unwrap_or('\0');
        fail(offset, ParseErrorKind::Unexpected(c))
    };
    let size_at = |pos: &mut usize| -> Result<u32, SignatureParseError> {
        let start = *pos;
        while *pos < bytes.len() && bytes[*pos].is_ascii_digit() {
            *pos += 1;
        }
        let digits = &text[start..*pos];
        if digits.is_empty() {
            return Err(fail(start, ParseErrorKind::MissingSize));
        }
        if digits.starts_with('0') {
            return Err(fail(start, ParseErrorKind::NonCanonicalSize));
        }
        digits
            .parse()
            .map_err(|_| fail(start, ParseErrorKind::SizeTooLarge))
    };

    if bytes.is_empty() {
        return Err(fail(0, ParseErrorKind::Empty));
    }
    let mut pos = 1;
    let ret = match bytes[0] {
        b'v' => ReturnAbi::Void,
        b'S' => ReturnAbi::Buffer {
            size: size_at(&mut pos)?,
        },
        b => match WasmValueType::from_sig_char(b as char) {
            Some(v) => ReturnAbi::Value(v),
            None => return Err(unexpected(0)),
        },
    };
    let this_at = pos;
    let has_this = bytes.get(pos) == Some(&b'T');
    if has_this {
        pos += 1;
    }
    // The generic context is written only before 'a' can it be told from a parameter.
    let ctx_char = pointer.value_type().sig_char() as u8;
    let generic_context = bytes.get(pos) == Some(&ctx_char) && bytes.get(pos + 1) == Some(&b'a');
    if generic_context {
        pos += 1;
    }
    let async_continuation = bytes.get(pos) == Some(&b'a');
    if async_continuation {
        pos += 1;
    }
    let mut params = Vec::new();
    while pos < bytes.len() && bytes[pos] != b'p' {
        let b = bytes[pos];
        params.push(match b {
            b'S' => {
                pos += 1;
                ParamAbi::ByRef {
                    size: size_at(&mut pos)?,
                }
            }
            b'A' => {
                pos += 1;
                ParamAbi::ByRefOverAligned {
                    size: size_at(&mut pos)?,
                }
            }
            b'e' => {
                pos += 1;
                ParamAbi::Empty
            }
            _ => match WasmValueType::from_sig_char(b as char) {
                Some(v) => {
                    pos += 1;
                    ParamAbi::Value(v)
                }
                None => return Err(unexpected(pos)),
            },
        });
    }
    let managed = pos < bytes.len();
    if managed {
        pos += 1;
        if pos < bytes.len() {
            return Err(fail(pos, ParseErrorKind::TrailingCharacters));
        }
    }
    if has_this && !managed {
        return Err(fail(this_at, ParseErrorKind::ThisOnUnmanaged));
    }
    Ok(SignatureParts {
        ret,
        has_this,
        generic_context,
        async_continuation,
        params,
        managed,
    })
}
