//! Errors of the image encoder and decoder.

/// What is wrong with an image (decoding) or an image model (encoding). Decoding errors name
/// the byte offset in the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The image ends before a structure does.
    #[error(
        "image truncated: {what} at offset {offset} needs {needed} bytes, {available} available"
    )]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Its offset.
        offset: u64,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left from `offset`.
        available: u64,
    },
    /// The first four bytes are not `CGR2`.
    #[error("not a crossgraph image: magic {found:02x?} at offset 0, expected \"CGR2\"")]
    BadMagic {
        /// What was found.
        found: [u8; 4],
    },
    /// A major version this reader does not know.
    #[error("unsupported image version {major}.{minor} at offset 4 (this reader knows major 1)")]
    UnsupportedVersion {
        /// Major.
        major: u16,
        /// Minor.
        minor: u16,
    },
    /// Two directory entries of one kind.
    #[error("section kind {kind} appears twice in the directory (entry at offset {offset})")]
    DuplicateSection {
        /// Section kind.
        kind: u32,
        /// Offset of the second entry.
        offset: u64,
    },
    /// A structure that is inconsistent.
    #[error("malformed {what} at offset {offset}: {reason}")]
    Malformed {
        /// The structure.
        what: &'static str,
        /// Its offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A fixup signature with a kind this format does not define.
    #[error("unknown fixup kind 0x{kind:02x} at offset {offset}")]
    UnknownFixupKind {
        /// The kind byte.
        kind: u8,
        /// Offset of the signature.
        offset: u64,
    },
    /// A method fixup naming a section or cell that does not exist.
    #[error(
        "method 0x{token:08x}: fixup names cell {cell} of import section {section}, which does not exist"
    )]
    FixupOutOfRange {
        /// The method's token.
        token: u32,
        /// Section index.
        section: u32,
        /// Cell index.
        cell: u32,
    },
    /// Encoding: a string thunk key that is empty or contains NUL.
    #[error("string thunk key {key:?} is empty or contains NUL")]
    InvalidThunkKey {
        /// The key.
        key: String,
    },
    /// Encoding: an import cell size other than 4 or 8 bytes (8 or 16 for a portable
    /// entry-point section).
    #[error(
        "import section {section}: entry size {entry_size} (must be 4 or 8; 8 or 16 for portable entry points)"
    )]
    InvalidEntrySize {
        /// Section index.
        section: usize,
        /// The size.
        entry_size: u8,
    },
    /// Encoding: a cell of a portable entry-point section whose signature is not a
    /// `MethodEntry`.
    #[error(
        "import section {section}, cell {cell}: a portable entry point needs a MethodEntry (0x13) signature"
    )]
    PortableEntryPointSignature {
        /// Section index.
        section: usize,
        /// Cell index.
        cell: usize,
    },
    /// Encoding: the image would exceed 4 GiB.
    #[error("image exceeds 4 GiB")]
    TooLarge,
}
