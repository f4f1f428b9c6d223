//! Writes the seed corpus of the `image_decode` fuzz target (`fuzz/`): a few valid encoded
//! images, one file each, that cover every section kind, both cell sizes and every fixup kind,
//! so libFuzzer starts from inputs that get past the header checks.
//!
//! Regenerate the committed seeds after a format change, from the workspace root:
//!
//! ```text
//! cargo run -p crossgraph-runtime-core --example write_fuzz_seeds -- fuzz/seeds/image_decode
//! ```

use std::path::PathBuf;

use crossgraph_runtime_core::format::{
    FixupRef, FixupSignature, Image, ImportCell, ImportSection, ImportSectionFlags,
    ImportSectionType, MethodEntryPoint, MethodRef, MethodSigFlags, StringThunk,
};

fn method(token: u32) -> MethodRef {
    MethodRef {
        flags: MethodSigFlags::NONE,
        token,
    }
}

fn async_variant(token: u32) -> MethodRef {
    MethodRef {
        flags: MethodSigFlags::ASYNC_VARIANT,
        token,
    }
}

fn thunks(list: &[(&str, u32)]) -> FixupSignature {
    FixupSignature::InjectStringThunks(
        list.iter()
            .map(|&(key, code)| StringThunk {
                key: key.into(),
                code,
            })
            .collect(),
    )
}

/// The `sample()` image of `runtime-core/tests/format.rs`.
fn sample() -> Image {
    let entry = FixupSignature::MethodEntry(method(0x0600_0002));
    Image {
        minor_version: 0,
        compiler: Some("crossgraph test".into()),
        import_sections: vec![
            ImportSection {
                flags: ImportSectionFlags::EAGER,
                kind: ImportSectionType::UNKNOWN,
                entry_size: 4,
                cells: vec![ImportCell {
                    initial: 0,
                    signature: thunks(&[("Iiiip", 3), ("Miiip", 4)]),
                }],
            },
            ImportSection {
                flags: ImportSectionFlags::PCODE,
                kind: ImportSectionType::UNKNOWN,
                entry_size: 4,
                cells: vec![
                    ImportCell {
                        initial: 9,
                        signature: entry.clone(),
                    },
                    ImportCell {
                        initial: 9,
                        signature: entry,
                    },
                    ImportCell {
                        initial: 0,
                        signature: FixupSignature::ResumptionStubEntryPoint {
                            method: async_variant(0x0600_0005),
                            stub: 12,
                        },
                    },
                ],
            },
        ],
        method_entry_points: vec![MethodEntryPoint {
            method: method(0x0600_0001),
            code: 1,
            fixups: vec![FixupRef {
                section: 1,
                cell: 0,
            }],
        }],
        instance_entry_points: vec![MethodEntryPoint {
            method: async_variant(0x0600_0005),
            code: 11,
            fixups: vec![FixupRef {
                section: 1,
                cell: 2,
            }],
        }],
    }
}

/// wasm64 cells: two 8-byte-cell sections, lazy cells holding import-thunk code references.
fn wide_cells() -> Image {
    Image {
        minor_version: 0,
        compiler: Some("crossgraph wasm64".into()),
        import_sections: vec![
            ImportSection {
                flags: ImportSectionFlags::NONE,
                kind: ImportSectionType::STUB_DISPATCH,
                entry_size: 8,
                cells: vec![
                    ImportCell {
                        initial: 7,
                        signature: FixupSignature::MethodEntry(method(0x0A00_0001)),
                    },
                    ImportCell {
                        initial: u32::MAX,
                        signature: FixupSignature::Helper(0x42),
                    },
                ],
            },
            ImportSection {
                flags: ImportSectionFlags::PCODE,
                kind: ImportSectionType::UNKNOWN,
                entry_size: 8,
                cells: vec![ImportCell {
                    initial: 0,
                    signature: FixupSignature::Helper(0x42),
                }],
            },
        ],
        method_entry_points: vec![MethodEntryPoint {
            method: method(0x0600_0001),
            code: 2,
            fixups: vec![
                FixupRef {
                    section: 0,
                    cell: 1,
                },
                FixupRef {
                    section: 1,
                    cell: 0,
                },
            ],
        }],
        instance_entry_points: vec![],
    }
}

/// Several `InjectStringThunks` cells, one list shared by two cells.
fn string_thunks() -> Image {
    let shared = thunks(&[("Iv", 1), ("Mv", 2)]);
    Image {
        minor_version: 0,
        compiler: None,
        import_sections: vec![ImportSection {
            flags: ImportSectionFlags::EAGER,
            kind: ImportSectionType::STRING_HANDLE,
            entry_size: 4,
            cells: vec![
                ImportCell {
                    initial: 0,
                    signature: thunks(&[("Ii", 10), ("Iii", 11), ("Iiil", 12), ("Mi", 13)]),
                },
                ImportCell {
                    initial: 0,
                    signature: shared.clone(),
                },
                ImportCell {
                    initial: 0,
                    signature: shared,
                },
                ImportCell {
                    initial: 0,
                    signature: thunks(&[]),
                },
                ImportCell {
                    initial: 0,
                    signature: thunks(&[("Mfdp", 0xFFFF_FFFF)]),
                },
            ],
        }],
        ..Image::default()
    }
}

/// A lazy `StringHandle` section (fixup 0x1B): the cells `ldstr` loads.
fn string_literals() -> Image {
    Image {
        compiler: Some("crossgraph ldstr".into()),
        import_sections: vec![ImportSection {
            flags: ImportSectionFlags::NONE,
            kind: ImportSectionType::STRING_HANDLE,
            entry_size: 4,
            cells: [0x7000_0001, 0x7000_000d, 0x7000_0023]
                .into_iter()
                .map(|token| ImportCell {
                    initial: 0,
                    signature: FixupSignature::StringHandle(token),
                })
                .collect(),
        }],
        ..Image::default()
    }
}

/// A lazy section of `NewObject` cells (fixup 0x1C): the classes `newobj` allocates; and one
/// of `NewArray` cells (fixup 0x1D): the element types `newarr` allocates arrays of, with an
/// `IsInstanceOf` (0x1E) and a `ChkCast` (0x1F) cell: the types `isinst`/`castclass` test.
fn new_objects() -> Image {
    Image {
        compiler: Some("crossgraph newobj".into()),
        import_sections: vec![
            ImportSection {
                flags: ImportSectionFlags::NONE,
                kind: ImportSectionType::UNKNOWN,
                entry_size: 4,
                cells: [0x0100_0001, 0x0200_0002]
                    .into_iter()
                    .map(|token| ImportCell {
                        initial: 0,
                        signature: FixupSignature::NewObject(token),
                    })
                    .collect(),
            },
            ImportSection {
                flags: ImportSectionFlags::NONE,
                kind: ImportSectionType::UNKNOWN,
                entry_size: 4,
                cells: [0x0100_0004, 0x1b00_0001]
                    .into_iter()
                    .map(|token| ImportCell {
                        initial: 0,
                        signature: FixupSignature::NewArray(token),
                    })
                    .chain([
                        ImportCell {
                            initial: 0,
                            signature: FixupSignature::IsInstanceOf(0x0200_0002),
                        },
                        ImportCell {
                            initial: 0,
                            signature: FixupSignature::ChkCast(0x0100_0004),
                        },
                    ])
                    .collect(),
            },
        ],
        ..Image::default()
    }
}

/// A lazy section of `FieldAddress` cells (fixup 0x20): the static fields `ldsfld`, `stsfld`
/// and `ldsflda` reach (a `Field` and a `MemberRef` token).
fn static_fields() -> Image {
    Image {
        compiler: Some("crossgraph statics".into()),
        import_sections: vec![ImportSection {
            flags: ImportSectionFlags::NONE,
            kind: ImportSectionType::UNKNOWN,
            entry_size: 4,
            cells: [0x0400_0001, 0x0a00_0003]
                .into_iter()
                .map(|token| ImportCell {
                    initial: 0,
                    signature: FixupSignature::FieldAddress(token),
                })
                .collect(),
        }],
        ..Image::default()
    }
}

/// A dispatch section of `VirtualEntry` cells (fixup 0x16; a `MethodDef` and a `MemberRef`),
/// each holding the code reference of an R2R -> interpreter thunk.
fn virtual_entries() -> Image {
    Image {
        compiler: Some("crossgraph virtual calls".into()),
        import_sections: vec![ImportSection {
            flags: ImportSectionFlags::NONE,
            kind: ImportSectionType::STUB_DISPATCH,
            entry_size: 4,
            cells: [(0x0600_0004, 7), (0x0a00_0002, 8)]
                .into_iter()
                .map(|(token, thunk)| ImportCell {
                    initial: thunk,
                    signature: FixupSignature::VirtualEntry(method(token)),
                })
                .collect(),
        }],
        ..Image::default()
    }
}

/// A lazy section of `TypeHandle` and `FieldHandle` cells (fixups 0x10, 0x12): the runtime
/// handles `ldtoken` loads (a `TypeDef`, a `TypeSpec`, a `Field`).
fn runtime_handles() -> Image {
    Image {
        compiler: Some("crossgraph handles".into()),
        import_sections: vec![ImportSection {
            flags: ImportSectionFlags::NONE,
            kind: ImportSectionType::UNKNOWN,
            entry_size: 4,
            cells: vec![
                ImportCell {
                    initial: 0,
                    signature: FixupSignature::TypeHandle(0x0200_0002),
                },
                ImportCell {
                    initial: 0,
                    signature: FixupSignature::TypeHandle(0x1b00_0001),
                },
                ImportCell {
                    initial: 0,
                    signature: FixupSignature::FieldHandle(0x0400_0005),
                },
            ],
        }],
        ..Image::default()
    }
}

/// Both entry-point tables, records with several fixups and with none.
fn entry_points() -> Image {
    Image {
        minor_version: 3,
        compiler: Some("crossgraph entry points".into()),
        import_sections: vec![
            ImportSection {
                flags: ImportSectionFlags::EAGER,
                kind: ImportSectionType::UNKNOWN,
                entry_size: 4,
                cells: vec![ImportCell {
                    initial: 0,
                    signature: thunks(&[("Iiii", 5)]),
                }],
            },
            ImportSection {
                flags: ImportSectionFlags::PCODE,
                kind: ImportSectionType::UNKNOWN,
                entry_size: 4,
                cells: vec![
                    ImportCell {
                        initial: 20,
                        signature: FixupSignature::MethodEntry(method(0x0600_0003)),
                    },
                    ImportCell {
                        initial: 21,
                        signature: FixupSignature::MethodEntry(method(0x0A00_0002)),
                    },
                    ImportCell {
                        initial: 0,
                        signature: FixupSignature::ResumptionStubEntryPoint {
                            method: async_variant(0x0600_0004),
                            stub: 30,
                        },
                    },
                    ImportCell {
                        initial: 0,
                        signature: FixupSignature::Helper(1),
                    },
                ],
            },
        ],
        method_entry_points: vec![
            MethodEntryPoint {
                method: method(0x0600_0001),
                code: 1,
                fixups: vec![
                    FixupRef {
                        section: 0,
                        cell: 0,
                    },
                    FixupRef {
                        section: 1,
                        cell: 0,
                    },
                    FixupRef {
                        section: 1,
                        cell: 1,
                    },
                ],
            },
            MethodEntryPoint {
                method: method(0x0600_0002),
                code: 2,
                fixups: vec![],
            },
            MethodEntryPoint {
                method: method(0x0600_0003),
                code: 3,
                fixups: vec![FixupRef {
                    section: 1,
                    cell: 3,
                }],
            },
        ],
        instance_entry_points: vec![
            MethodEntryPoint {
                method: async_variant(0x0600_0004),
                code: 4,
                fixups: vec![FixupRef {
                    section: 1,
                    cell: 2,
                }],
            },
            MethodEntryPoint {
                method: method(0x0A00_0003),
                code: 5,
                fixups: vec![],
            },
        ],
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        return Err("usage: write_fuzz_seeds <output directory>".into());
    };
    std::fs::create_dir_all(&dir)?;
    let seeds = [
        ("empty", Image::default()),
        ("sample", sample()),
        ("wide_cells", wide_cells()),
        ("string_thunks", string_thunks()),
        ("entry_points", entry_points()),
        ("string_literals", string_literals()),
        ("new_objects", new_objects()),
        ("static_fields", static_fields()),
        ("virtual_entries", virtual_entries()),
        ("runtime_handles", runtime_handles()),
    ];
    for (name, image) in seeds {
        let bytes = image.encode()?;
        // A seed that does not round trip would start the fuzzer from a rejected input.
        assert_eq!(
            Image::decode(&bytes)?,
            image,
            "seed {name} does not round trip"
        );
        let path = dir.join(format!("{name}.bin"));
        std::fs::write(&path, &bytes)?;
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}
