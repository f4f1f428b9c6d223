//! crossgraph-runtime-core: the image format shared by writer and reader; the loader, fixup
//! resolution, thunk tables, entry points and execution in wasmtime come with the runtime
//! issue.
//!
//! ```
//! use crossgraph_runtime_core::format::{
//!     FixupSignature, Image, ImportCell, ImportSection, ImportSectionFlags, ImportSectionType,
//!     StringThunk,
//! };
//!
//! let image = Image {
//!     compiler: Some("crossgraph".into()),
//!     import_sections: vec![ImportSection {
//!         flags: ImportSectionFlags::EAGER,
//!         kind: ImportSectionType::UNKNOWN,
//!         entry_size: 4,
//!         cells: vec![ImportCell {
//!             initial: 0,
//!             signature: FixupSignature::InjectStringThunks(vec![
//!                 StringThunk { key: "Iiiip".into(), code: 7 },
//!             ]),
//!         }],
//!     }],
//!     ..Image::default()
//! };
//! let bytes = image.encode()?;
//! assert_eq!(&bytes[..4], b"CGR2");
//! assert_eq!(Image::decode(&bytes)?, image);
//! # Ok::<(), crossgraph_runtime_core::format::FormatError>(())
//! ```
#![deny(missing_docs)]

pub mod format;
