//! The loader: image extraction, eager fixups at load, lazy and per-method fixups, and
//! MethodEntry resolution for managed and unmanaged callers.

use crossgraph_runtime_core::format::{
    CodeRefSite, FixupRef, FixupSignature, FormatError, Image, ImportCell, ImportSection,
    ImportSectionFlags, ImportSectionType, MethodEntryPoint, MethodRef, MethodSigFlags,
    StringThunk,
};
use crossgraph_runtime_core::loader::UNMANAGED_CALLERS_ONLY;
use crossgraph_runtime_core::{
    CallKind, CodeRef, InterpretedMethod, LoadError, Loader, ThunkRuntime, image_from_module,
};

const TABLE_BASE: u32 = 100;

fn method(token: u32) -> MethodRef {
    MethodRef {
        flags: MethodSigFlags::NONE,
        token,
    }
}

fn cell(signature: FixupSignature) -> ImportCell {
    ImportCell {
        initial: 0,
        signature,
    }
}

/// Methods: 0x06000001 (R2R, slot 1, needs lazy cell 0), 0x06000002 (UCO, slot 2),
/// 0x06000005 async variant (slot 5) with a resumption stub (slot 6); 0x06000009 is
/// interpreted only.
fn image() -> Image {
    let variant = MethodRef {
        flags: MethodSigFlags::ASYNC_VARIANT,
        token: 0x0600_0005,
    };
    Image {
        compiler: Some("loader test".into()),
        import_sections: vec![
            ImportSection {
                flags: ImportSectionFlags::EAGER,
                kind: ImportSectionType::UNKNOWN,
                entry_size: 4,
                cells: vec![
                    cell(FixupSignature::InjectStringThunks(vec![
                        StringThunk {
                            key: "Iiiip".into(),
                            code: 3,
                        },
                        StringThunk {
                            key: "Miiip".into(),
                            code: 4,
                        },
                    ])),
                    cell(FixupSignature::Helper(7)),
                ],
            },
            ImportSection {
                flags: ImportSectionFlags::NONE,
                kind: ImportSectionType::UNKNOWN,
                entry_size: 4,
                cells: vec![
                    cell(FixupSignature::MethodEntry(method(0x0600_0009))),
                    cell(FixupSignature::MethodEntry(method(0x0600_0001))),
                    cell(FixupSignature::ResumptionStubEntryPoint {
                        method: variant,
                        stub: 6,
                    }),
                    cell(FixupSignature::MethodEntry(method(0x0600_0002))),
                ],
            },
            ImportSection {
                flags: ImportSectionFlags::NONE,
                kind: ImportSectionType::STRING_HANDLE,
                entry_size: 4,
                cells: vec![
                    cell(FixupSignature::StringHandle(0x7000_0001)),
                    cell(FixupSignature::NewObject(0x0200_0002)),
                    cell(FixupSignature::FieldAddress(0x0400_0003)),
                    cell(FixupSignature::NewArray(0x0100_0004)),
                    cell(FixupSignature::ChkCast(0x0100_0005)),
                    cell(FixupSignature::TypeHandle(0x0200_0006)),
                ],
            },
            ImportSection {
                flags: ImportSectionFlags::NONE,
                kind: ImportSectionType::STUB_DISPATCH,
                entry_size: 4,
                cells: vec![ImportCell {
                    // The R2R -> interpreter thunk of the method's signature.
                    initial: 3,
                    signature: FixupSignature::VirtualEntry(method(0x0600_0004)),
                }],
            },
        ],
        method_entry_points: vec![
            MethodEntryPoint {
                method: method(0x0600_0001),
                code: 1,
                fixups: vec![FixupRef {
                    section: 1,
                    cell: 0,
                }],
            },
            MethodEntryPoint {
                method: MethodRef {
                    flags: UNMANAGED_CALLERS_ONLY,
                    token: 0x0600_0002,
                },
                code: 2,
                fixups: vec![],
            },
        ],
        instance_entry_points: vec![MethodEntryPoint {
            method: variant,
            code: 5,
            fixups: vec![FixupRef {
                section: 1,
                cell: 2,
            }],
        }],
        ..Image::default()
    }
}

fn loader() -> (Loader, usize) {
    let loader = Loader::new(ThunkRuntime::default());
    loader.provide_helper(7, CodeRef(42));
    loader.register_interpreted(
        method(0x0600_0009),
        InterpretedMethod {
            thunk_key: "Iiiip".into(),
        },
    );
    let handle = loader
        .load_image(&image().encode().unwrap(), TABLE_BASE)
        .unwrap();
    (loader, handle)
}

#[test]
fn eager_fixups_run_at_load_with_absolute_code_references() {
    let (loader, handle) = loader();
    let table = loader.thunks().table();
    assert_eq!(table.lookup_thunk("Iiiip"), Some(CodeRef(TABLE_BASE + 3)));
    assert_eq!(table.lookup_thunk("Miiip"), Some(CodeRef(TABLE_BASE + 4)));
    // The eager helper cell resolved at load; asking again returns the stored value.
    assert_eq!(loader.resolve_cell(handle, 0, 1).unwrap(), 42);
}

#[test]
fn method_entry_resolution_per_caller_kind() {
    let (loader, handle) = loader();
    // R2R code for a managed caller.
    assert_eq!(loader.resolve_cell(handle, 1, 1).unwrap(), TABLE_BASE + 1);
    // An interpreted-only method: the R2R -> interpreter thunk of its signature.
    assert_eq!(loader.resolve_cell(handle, 1, 0).unwrap(), TABLE_BASE + 3);
    // UnmanagedCallersOnly: its own unmanaged function for unmanaged callers, and no
    // managed-shaped entry at all.
    assert_eq!(
        loader
            .method_entry(method(0x0600_0002), CallKind::Unmanaged)
            .unwrap(),
        CodeRef(TABLE_BASE + 2)
    );
    assert_eq!(
        loader.resolve_cell(handle, 1, 3).unwrap_err(),
        LoadError::UnmanagedOnly { token: 0x0600_0002 }
    );
    assert!(matches!(
        loader.method_entry(method(0x0600_0077), CallKind::Managed),
        Err(LoadError::UnknownMethod {
            token: 0x0600_0077,
            ..
        })
    ));
}

#[test]
fn prepare_method_resolves_its_fixups_and_registers_the_resumption_stub() {
    let (loader, _) = loader();
    assert_eq!(
        loader.prepare_method(method(0x0600_0001)).unwrap(),
        CodeRef(TABLE_BASE + 1)
    );
    let variant = MethodRef {
        flags: MethodSigFlags::ASYNC_VARIANT,
        token: 0x0600_0005,
    };
    loader.prepare_method(variant).unwrap();
    let entry = loader.entry_point(variant).unwrap();
    assert_eq!(
        entry.resumption_stub().unwrap().code,
        CodeRef(TABLE_BASE + 6)
    );
    // Resolving again registers nothing new.
    loader.prepare_method(variant).unwrap();
    assert_eq!(
        entry.resumption_stub().unwrap().code,
        CodeRef(TABLE_BASE + 6)
    );
}

#[test]
fn bad_images_and_missing_pieces_are_typed_errors() {
    let loader = Loader::new(ThunkRuntime::default());
    assert!(matches!(
        loader.load_image(b"CGR2", 0),
        Err(LoadError::Format(FormatError::Truncated { .. }))
    ));
    // No helper 7 provided: the eager helper cell cannot resolve.
    assert_eq!(
        loader
            .load_image(&image().encode().unwrap(), 0)
            .unwrap_err(),
        LoadError::UnknownHelper { id: 7 }
    );
    assert!(matches!(
        loader.resolve_cell(99, 0, 0),
        Err(LoadError::NoSuchCell { module: 99, .. })
    ));
    assert_eq!(
        image_from_module(b"\0asm\x01\0\0\0"),
        Err(LoadError::NoImage)
    );
    assert!(matches!(
        image_from_module(b"not wasm"),
        Err(LoadError::Module { .. })
    ));
}

#[test]
fn code_references_beyond_the_table_index_space_are_refused() {
    // Found by the load_image fuzz target: a thunk code of u32::MAX overflowed table base + slot.
    let mut bad = image();
    if let FixupSignature::InjectStringThunks(thunks) =
        &mut bad.import_sections[0].cells[0].signature
    {
        thunks[0].code = u32::MAX;
    }
    let loader = Loader::new(ThunkRuntime::default());
    loader.provide_helper(7, CodeRef(42));
    assert_eq!(
        loader
            .load_image(&bad.encode().unwrap(), TABLE_BASE)
            .unwrap_err(),
        LoadError::CodeReference {
            code: u32::MAX,
            table_base: TABLE_BASE
        }
    );
    // Nothing of the refused image was registered.
    assert_eq!(loader.thunks().table().lookup_thunk("Miiip"), None);
    assert!(loader.entry_point(method(0x0600_0001)).is_err());
}

#[test]
fn string_handle_new_object_new_array_type_check_and_field_address_cells_are_the_embedders() {
    let (loader, handle) = loader();
    // The loader makes no strings: the executor resolves these cells through the embedder.
    assert!(matches!(
        loader.resolve_cell(handle, 2, 0),
        Err(LoadError::StringLiteral { token: 0x7000_0001 })
    ));
    let (_, sites) = image().encode_with_code_offsets().unwrap();
    let rva = sites
        .iter()
        .find_map(|&(site, at)| {
            (site
                == CodeRefSite::CellInitial {
                    section: 2,
                    cell: 0,
                })
            .then_some(at)
        })
        .unwrap();
    assert_eq!(
        loader.cell_at(handle, rva).unwrap(),
        (2, 0, FixupSignature::StringHandle(0x7000_0001))
    );
    assert!(matches!(
        loader.cell_at(handle, rva + 1),
        Err(LoadError::NoSuchCell { .. })
    ));
    // Racing resolvers: the first stored reference is the cell's for good.
    assert_eq!(loader.store_cell(handle, 2, 0, 4096).unwrap(), 4096);
    assert_eq!(loader.store_cell(handle, 2, 0, 8192).unwrap(), 4096);
    assert_eq!(loader.resolve_cell(handle, 2, 0).unwrap(), 4096);
    assert!(matches!(
        loader.store_cell(handle, 2, 6, 1),
        Err(LoadError::NoSuchCell { .. })
    ));
    // Allocations too are the embedder's: a NewObject cell only names the class.
    assert!(matches!(
        loader.resolve_cell(handle, 2, 1),
        Err(LoadError::NewObject { token: 0x0200_0002 })
    ));
    // And the statics: a FieldAddress cell is resolved through the embedder, then stored.
    assert!(matches!(
        loader.resolve_cell(handle, 2, 2),
        Err(LoadError::StaticField { token: 0x0400_0003 })
    ));
    assert_eq!(loader.store_cell(handle, 2, 2, 12288).unwrap(), 12288);
    // Arrays are the embedder's too.
    assert!(matches!(
        loader.resolve_cell(handle, 2, 3),
        Err(LoadError::NewArray { token: 0x0100_0004 })
    ));
    // And type checks.
    assert!(matches!(
        loader.resolve_cell(handle, 2, 4),
        Err(LoadError::TypeCheck { token: 0x0100_0005 })
    ));
    assert_eq!(loader.resolve_cell(handle, 2, 2).unwrap(), 12288);
}

#[test]
fn type_handle_cells_are_the_embedders() {
    let (loader, handle) = loader();
    assert!(matches!(
        loader.resolve_cell(handle, 2, 5),
        Err(LoadError::RuntimeHandle { token: 0x0200_0006 })
    ));
    // Resolved by the executor through the embedder, then stored for good.
    assert_eq!(loader.store_cell(handle, 2, 5, 0x77).unwrap(), 0x77);
    assert_eq!(loader.resolve_cell(handle, 2, 5).unwrap(), 0x77);
}

#[test]
fn virtual_entry_cells_give_the_overrides_code_or_the_cells_thunk() {
    let (loader, handle) = loader();
    // Which override runs depends on each call's receiver: not the loader's to resolve.
    assert!(matches!(
        loader.resolve_cell(handle, 3, 0),
        Err(LoadError::VirtualEntry { token: 0x0600_0004 })
    ));
    // An override with R2R code runs it; one without runs the cell's thunk.
    assert_eq!(
        loader
            .virtual_entry_code(handle, 3, 0, method(0x0600_0001))
            .unwrap(),
        CodeRef(TABLE_BASE + 1)
    );
    assert_eq!(
        loader
            .virtual_entry_code(handle, 3, 0, method(0x0600_0009))
            .unwrap(),
        CodeRef(TABLE_BASE + 3)
    );
    assert!(matches!(
        loader.virtual_entry_code(handle, 2, 0, method(0x0600_0001)),
        Err(LoadError::NotVirtualEntry {
            section: 2,
            cell: 0,
            ..
        })
    ));
    assert!(matches!(
        loader.virtual_entry_code(handle, 3, 1, method(0x0600_0001)),
        Err(LoadError::NoSuchCell { .. })
    ));
}
