//! crossgraph-codegen: wasm ABI lowering, signature strings, thunk bodies, the IL -> wasm
//! method compiler and the object writer.
//!
//! Not built yet: this crate only fixes its place in the workspace (it will depend on
//! `crossgraph-runtime-core` for the image format). Its content arrives with the issue
//! "Wasm ABI lowering, signature strings, thunk code and the object writer".
#![deny(missing_docs)]
