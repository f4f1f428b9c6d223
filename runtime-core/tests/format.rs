//! The image format: round trips, sharing, and errors with offsets on bad bytes.

use crossgraph_runtime_core::format::{
    CodeRefSite, FixupRef, FixupSignature, FormatError, Image, ImportCell, ImportSection,
    ImportSectionFlags, ImportSectionType, MethodEntryPoint, MethodRef, MethodSigFlags,
    StringThunk,
};
use proptest::prelude::*;

fn method(token: u32) -> MethodRef {
    MethodRef {
        flags: MethodSigFlags::NONE,
        token,
    }
}

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
                    signature: FixupSignature::InjectStringThunks(vec![
                        StringThunk {
                            key: "Iiiip".into(),
                            code: 3,
                        },
                        StringThunk {
                            key: "Miiip".into(),
                            code: 4,
                        },
                    ]),
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
                            method: MethodRef {
                                flags: MethodSigFlags::ASYNC_VARIANT,
                                token: 0x0600_0005,
                            },
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
            method: MethodRef {
                flags: MethodSigFlags::ASYNC_VARIANT,
                token: 0x0600_0005,
            },
            code: 11,
            fixups: vec![FixupRef {
                section: 1,
                cell: 2,
            }],
        }],
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

#[test]
fn sample_round_trips_and_shares_identical_signatures() {
    let image = sample();
    let bytes = image.encode().unwrap();
    assert_eq!(Image::decode(&bytes).unwrap(), image);
    // The second import section's signature list: cells 0 and 1 share one blob.
    let directory_entry = (0..u32_at(&bytes, 12) as usize)
        .map(|i| 16 + 12 * i)
        .find(|&at| u32_at(&bytes, at) == 101)
        .unwrap();
    let descriptors = u32_at(&bytes, directory_entry + 4) as usize;
    let signatures = u32_at(&bytes, descriptors + 20 + 12) as usize;
    assert_eq!(u32_at(&bytes, signatures), u32_at(&bytes, signatures + 4));
    assert_ne!(u32_at(&bytes, signatures), u32_at(&bytes, signatures + 8));
}

#[test]
fn string_thunks_are_written_sorted_as_string_nul_code_then_zero() {
    let mut image = sample();
    if let FixupSignature::InjectStringThunks(thunks) =
        &mut image.import_sections[0].cells[0].signature
    {
        thunks.reverse();
    }
    let bytes = image.encode().unwrap();
    let expected: Vec<u8> = [
        &[0x39][..],
        b"Iiiip\0",
        &3u32.to_le_bytes(),
        b"Miiip\0",
        &4u32.to_le_bytes(),
        &[0],
    ]
    .concat();
    assert!(bytes.windows(expected.len()).any(|w| w == expected));
    assert_eq!(Image::decode(&bytes).unwrap(), sample());
}

#[test]
fn encoding_rejects_bad_models() {
    let mut image = sample();
    image.import_sections[0].entry_size = 3;
    assert!(matches!(
        image.encode(),
        Err(FormatError::InvalidEntrySize {
            section: 0,
            entry_size: 3
        })
    ));
    let mut image = sample();
    image.method_entry_points[0].fixups[0].cell = 7;
    assert!(matches!(
        image.encode(),
        Err(FormatError::FixupOutOfRange { cell: 7, .. })
    ));
    let mut image = sample();
    image.import_sections[0].cells[0].signature =
        FixupSignature::InjectStringThunks(vec![StringThunk {
            key: String::new(),
            code: 1,
        }]);
    assert!(matches!(
        image.encode(),
        Err(FormatError::InvalidThunkKey { .. })
    ));
}

#[test]
fn decoding_errors_name_offsets() {
    let bytes = sample().encode().unwrap();
    let err = Image::decode(&bytes[..10]).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::Truncated {
                offset: 0,
                needed: 16,
                available: 10,
                ..
            }
        ),
        "{err}"
    );

    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert!(matches!(
        Image::decode(&bad),
        Err(FormatError::BadMagic { .. })
    ));

    let mut bad = bytes.clone();
    bad[4] = 2;
    assert!(matches!(
        Image::decode(&bad),
        Err(FormatError::UnsupportedVersion { major: 2, .. })
    ));

    // Duplicate section: make the second directory entry the same kind as the first.
    let mut bad = bytes.clone();
    let first_kind = u32_at(&bad, 16);
    bad[28..32].copy_from_slice(&first_kind.to_le_bytes());
    assert!(matches!(
        Image::decode(&bad),
        Err(FormatError::DuplicateSection { offset: 28, .. })
    ));

    // A section running past the end.
    let mut bad = bytes.clone();
    bad[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = Image::decode(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::Truncated {
                what: "section",
                ..
            }
        ),
        "{err}"
    );

    // An unknown fixup kind: find the MethodEntry blob (0x13 + flags 0 + token) and break it.
    let needle: Vec<u8> = [
        &[0x13u8][..],
        &0u32.to_le_bytes(),
        &0x0600_0002u32.to_le_bytes(),
    ]
    .concat();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let mut bad = bytes.clone();
    bad[at] = 0x7f;
    let err = Image::decode(&bad).unwrap_err();
    assert_eq!(
        err,
        FormatError::UnknownFixupKind {
            kind: 0x7f,
            offset: at as u64
        }
    );
    assert!(err.to_string().contains(&format!("offset {at}")));
}

#[test]
fn portable_entry_points_are_code_then_handle() {
    let mut image = sample();
    image.import_sections.push(ImportSection {
        flags: ImportSectionFlags::PCODE,
        kind: ImportSectionType::PORTABLE_ENTRY_POINT,
        entry_size: 8,
        cells: vec![ImportCell {
            initial: 21,
            signature: FixupSignature::MethodEntry(method(0x0600_0007)),
        }],
    });
    let (bytes, sites) = image.encode_with_code_offsets().unwrap();
    assert_eq!(Image::decode(&bytes).unwrap(), image);
    let at = sites
        .iter()
        .find(|(site, _)| {
            *site
                == CodeRefSite::CellInitial {
                    section: 2,
                    cell: 0,
                }
        })
        .unwrap()
        .1 as usize;
    assert_eq!(u32_at(&bytes, at), 21, "word 0: the code");
    assert_eq!(
        u32_at(&bytes, at + 4),
        0x0600_0007,
        "word 1: the handle (PE)"
    );

    // A handle that disagrees with its MethodEntry names the entry's offset.
    let mut bad = bytes.clone();
    bad[at + 4] ^= 1;
    let err = Image::decode(&bad).unwrap_err();
    assert!(
        matches!(&err, FormatError::Malformed { what: "portable entry point", offset, .. }
            if *offset == at as u64 + 4),
        "{err}"
    );

    let mut wrong = image.clone();
    wrong.import_sections[2].entry_size = 4;
    assert!(matches!(
        wrong.encode(),
        Err(FormatError::InvalidEntrySize {
            section: 2,
            entry_size: 4
        })
    ));
    let mut wrong = image;
    wrong.import_sections[2].cells[0].signature = FixupSignature::Helper(3);
    assert_eq!(
        wrong.encode(),
        Err(FormatError::PortableEntryPointSignature {
            section: 2,
            cell: 0
        })
    );
}

fn image_strategy() -> impl Strategy<Value = Image> {
    let method = (
        any::<u32>(),
        prop_oneof![Just(0u32), Just(0x100), Just(0x200)],
    )
        .prop_map(|(token, flags)| MethodRef {
            flags: MethodSigFlags(flags),
            token,
        });
    let thunks =
        prop::collection::btree_map("[IM][a-zA-Z0-9]{1,12}", any::<u32>(), 0..6).prop_map(|m| {
            m.into_iter()
                .map(|(key, code)| StringThunk { key, code })
                .collect()
        });
    let signature = prop_oneof![
        method.clone().prop_map(FixupSignature::MethodEntry),
        method.clone().prop_map(FixupSignature::VirtualEntry),
        any::<u32>().prop_map(FixupSignature::Helper),
        any::<u32>().prop_map(FixupSignature::StringHandle),
        any::<u32>().prop_map(FixupSignature::NewObject),
        any::<u32>().prop_map(FixupSignature::NewArray),
        any::<u32>().prop_map(FixupSignature::IsInstanceOf),
        any::<u32>().prop_map(FixupSignature::ChkCast),
        any::<u32>().prop_map(FixupSignature::FieldAddress),
        any::<u32>().prop_map(FixupSignature::TypeHandle),
        any::<u32>().prop_map(FixupSignature::FieldHandle),
        (method.clone(), any::<u32>())
            .prop_map(|(method, stub)| FixupSignature::ResumptionStubEntryPoint { method, stub }),
        thunks.prop_map(FixupSignature::InjectStringThunks),
    ];
    let cell = (any::<u32>(), signature)
        .prop_map(|(initial, signature)| ImportCell { initial, signature });
    let section = (
        prop_oneof![Just(0u16), Just(1), Just(4), Just(5)],
        prop_oneof![Just(0u8), Just(2), Just(3)],
        prop_oneof![Just(4u8), Just(8)],
        prop::collection::vec(cell, 0..6),
    )
        .prop_map(|(flags, kind, entry_size, cells)| ImportSection {
            flags: ImportSectionFlags(flags),
            kind: ImportSectionType(kind),
            entry_size,
            cells,
        });
    // Portable entry points: MethodEntry cells, two words each.
    let portable = (
        prop_oneof![Just(8u8), Just(16)],
        prop::collection::vec((any::<u32>(), method.clone()), 0..4),
    )
        .prop_map(|(entry_size, cells)| ImportSection {
            flags: ImportSectionFlags::PCODE,
            kind: ImportSectionType::PORTABLE_ENTRY_POINT,
            entry_size,
            cells: cells
                .into_iter()
                .map(|(initial, m)| ImportCell {
                    initial,
                    signature: FixupSignature::MethodEntry(m),
                })
                .collect(),
        });
    let section = prop_oneof![4 => section, 1 => portable];
    (
        any::<u16>(),
        prop::option::of("[ -~]{0,20}"),
        prop::collection::vec(section, 0..4),
        prop::collection::vec((method.clone(), any::<u32>(), any::<u64>()), 0..6),
        prop::collection::vec((method, any::<u32>(), any::<u64>()), 0..6),
    )
        .prop_map(
            |(minor_version, compiler, import_sections, defs, instances)| {
                let cells: Vec<FixupRef> = import_sections
                    .iter()
                    .enumerate()
                    .flat_map(|(s, sec)| {
                        (0..sec.cells.len()).map(move |c| FixupRef {
                            section: s as u32,
                            cell: c as u32,
                        })
                    })
                    .collect();
                let entries = |list: Vec<(MethodRef, u32, u64)>| -> Vec<MethodEntryPoint> {
                    list.into_iter()
                        .map(|(method, code, pick)| MethodEntryPoint {
                            method,
                            code,
                            fixups: if cells.is_empty() {
                                vec![]
                            } else {
                                (0..pick % 3)
                                    .map(|k| {
                                        cells[((pick >> 8) as usize + k as usize) % cells.len()]
                                    })
                                    .collect()
                            },
                        })
                        .collect()
                };
                Image {
                    minor_version,
                    compiler,
                    method_entry_points: entries(defs),
                    instance_entry_points: entries(instances),
                    import_sections,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_decode_round_trips(image in image_strategy()) {
        let bytes = image.encode().unwrap();
        prop_assert_eq!(Image::decode(&bytes).unwrap(), image);
    }

    #[test]
    fn code_offsets_point_at_every_code_reference(image in image_strategy()) {
        let (bytes, sites) = image.encode_with_code_offsets().unwrap();
        prop_assert_eq!(bytes.clone(), image.encode().unwrap());
        let mut expected = 0;
        for (site, offset) in sites {
            let code = match site {
                CodeRefSite::MethodEntry(i) => image.method_entry_points[i].code,
                CodeRefSite::InstanceEntry(i) => image.instance_entry_points[i].code,
                CodeRefSite::StringThunk { section, cell, thunk } => {
                    match &image.import_sections[section].cells[cell].signature {
                        FixupSignature::InjectStringThunks(t) => t[thunk].code,
                        _ => unreachable!("site of a string thunk cell"),
                    }
                }
                CodeRefSite::CellInitial { section, cell } => {
                    image.import_sections[section].cells[cell].initial
                }
                CodeRefSite::ResumptionStub { section, cell } => {
                    match &image.import_sections[section].cells[cell].signature {
                        FixupSignature::ResumptionStubEntryPoint { stub, .. } => *stub,
                        _ => unreachable!("site of a resumption stub cell"),
                    }
                }
            };
            prop_assert_eq!(u32_at(&bytes, offset as usize), code);
            expected += 1;
        }
        let thunks: usize = image.import_sections.iter().flat_map(|s| &s.cells).map(|c| match &c.signature {
            FixupSignature::InjectStringThunks(t) => t.len(),
            FixupSignature::ResumptionStubEntryPoint { .. } => 1,
            _ => 0,
        }).sum();
        let cells: usize = image.import_sections.iter().map(|s| s.cells.len()).sum();
        prop_assert_eq!(expected, cells + thunks + image.method_entry_points.len() + image.instance_entry_points.len());
    }

    #[test]
    fn decoding_mutated_images_never_panics(
        image in image_strategy(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = image.encode().unwrap();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = Image::decode(&bytes);
        let len = cut.index(bytes.len() + 1);
        let _ = Image::decode(&bytes[..len]);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Image::decode(&bytes);
        let mut with_magic = b"CGR2\x01\x00\x00\x00\x00\x00\x00\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = Image::decode(&with_magic);
    }
}

#[test]
fn shared_signatures_cannot_expand_an_image_without_bound() {
    // 2,000 cells whose signatures all point at one 100,000-byte thunk key: 200 MB of model
    // from a 110 KB image (the fuzzer's amplification case, scaled down).
    let cells = 2_000;
    let image = Image {
        import_sections: vec![ImportSection {
            flags: ImportSectionFlags::EAGER,
            kind: ImportSectionType::UNKNOWN,
            entry_size: 4,
            cells: vec![
                ImportCell {
                    initial: 0,
                    signature: FixupSignature::Helper(1),
                };
                cells
            ],
        }],
        ..Image::default()
    };
    let mut bytes = image.encode().unwrap();
    let blob = bytes.len() as u32;
    bytes.push(0x39);
    bytes.extend(std::iter::repeat_n(b'M', 100_000));
    bytes.push(0);
    bytes.extend_from_slice(&7u32.to_le_bytes());
    bytes.push(0);
    let directory_entry = (0..u32_at(&bytes, 12) as usize)
        .map(|i| 16 + 12 * i)
        .find(|&at| u32_at(&bytes, at) == 101)
        .unwrap();
    let descriptor = u32_at(&bytes, directory_entry + 4) as usize;
    let signatures = u32_at(&bytes, descriptor + 12) as usize;
    for c in 0..cells {
        bytes[signatures + 4 * c..signatures + 4 * c + 4].copy_from_slice(&blob.to_le_bytes());
    }
    let err = Image::decode(&bytes).unwrap_err();
    assert!(
        matches!(err, FormatError::Malformed { ref reason, .. } if reason.contains("times its size")),
        "{err}"
    );
}

#[test]
fn the_committed_fuzz_seeds_decode_and_cover_every_fixup_kind() {
    use crossgraph_runtime_core::format::fixup_kind;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/image_decode");
    let mut kinds = std::collections::BTreeSet::new();
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let image = Image::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Written by `write_fuzz_seeds`, which checks the round trip: still the same bytes.
        assert_eq!(image.encode().unwrap(), bytes, "{}", path.display());
        for cell in image.import_sections.iter().flat_map(|s| &s.cells) {
            kinds.insert(cell.signature.kind());
        }
        seeds += 1;
    }
    assert!(seeds >= 8, "{seeds} seeds in {dir}");
    assert_eq!(
        kinds.into_iter().collect::<Vec<u8>>(),
        [
            fixup_kind::TYPE_HANDLE,
            fixup_kind::FIELD_HANDLE,
            fixup_kind::METHOD_ENTRY,
            fixup_kind::VIRTUAL_ENTRY,
            fixup_kind::HELPER,
            fixup_kind::STRING_HANDLE,
            fixup_kind::NEW_OBJECT,
            fixup_kind::NEW_ARRAY,
            fixup_kind::IS_INSTANCE_OF,
            fixup_kind::CHK_CAST,
            fixup_kind::FIELD_ADDRESS,
            fixup_kind::RESUMPTION_STUB_ENTRY_POINT,
            fixup_kind::INJECT_STRING_THUNKS,
        ],
        "regenerate the seeds: cargo run -p crossgraph-runtime-core --example write_fuzz_seeds -- fuzz/seeds/image_decode"
    );
}
