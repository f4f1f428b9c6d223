//! Fuzzes the loader on untrusted images: `Loader::load_image` (decode, method registration,
//! eager fixups) and then on-demand resolution of every cell and method must never panic;
//! errors are fine.
#![no_main]

use crossgraph_runtime_core::format::Image;
use crossgraph_runtime_core::{CodeRef, Loader, ThunkRuntime};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let loader = Loader::new(ThunkRuntime::default());
    for id in 0..4 {
        loader.provide_helper(id, CodeRef(id));
    }
    let Ok(module) = loader.load_image(bytes, 7) else {
        return;
    };
    let image = Image::decode(bytes).expect("load_image decoded it");
    for (s, section) in image.import_sections.iter().enumerate() {
        for c in 0..section.cells.len() {
            let _ = loader.resolve_cell(module, s as u32, c as u32);
        }
    }
    for entry in image
        .method_entry_points
        .iter()
        .chain(&image.instance_entry_points)
    {
        let _ = loader.prepare_method(entry.method);
    }
    // Cell lookup by address, including addresses that are not cells.
    for rva in [0u32, 4, 16, 64, 1 << 20, u32::MAX] {
        let _ = loader.resolve_cell_at(module, rva);
    }
});
