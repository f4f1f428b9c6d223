//! crossgraph-runtime-core: the image format shared by writer and reader, the process-wide
//! string thunk table, portable entry points with pending thunk resolution, and resumption
//! stub registration, and the loader (image from a module, eager fixups at load, lazy and
//! per-method fixups on demand, MethodEntry resolution). Dispatch through the thunks and
//! execution in wasmtime come with the rest of the runtime issue.
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

pub mod abi;
pub mod entry_point;
#[cfg(feature = "exec")]
pub mod exec;
pub mod format;
pub mod loader;
pub mod string_thunks;

pub use entry_point::{LoaderAllocator, PortableEntryPoint, ResumptionStub, ThunkRuntime};
pub use loader::{CallKind, InterpretedMethod, LoadError, Loader, image_from_module};
pub use string_thunks::{CodeRef, MergeOutcome, StringThunkTable};
