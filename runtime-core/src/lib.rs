//! crossgraph-runtime-core: the image format shared by writer and reader, the loader, fixup
//! resolution, thunk tables, entry points and execution in wasmtime.
//!
//! Not built yet: this crate only fixes its place in the workspace (it depends on no other
//! workspace crate). Its content arrives with the issues on the image format and the runtime.
#![deny(missing_docs)]
