//! Image encoder.

use std::collections::HashMap;

use super::*;

/// Where each code reference of the model was written: `(site, byte offset)`.
pub type CodeOffsets = Vec<(CodeRefSite, u32)>;

/// A code reference of the image model, for [`Image::encode_with_code_offsets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CodeRefSite {
    /// `method_entry_points[i].code`.
    MethodEntry(usize),
    /// `instance_entry_points[i].code`.
    InstanceEntry(usize),
    /// The code of thunk `thunk` (model order) of the `InjectStringThunks` cell
    /// `import_sections[section].cells[cell]`.
    StringThunk {
        /// Import section index.
        section: usize,
        /// Cell index.
        cell: usize,
        /// Thunk index in the model's list.
        thunk: usize,
    },
    /// The initial value of cell `import_sections[section].cells[cell]` (a delay-load cell's
    /// import thunk); its offset is the cell's RVA.
    CellInitial {
        /// Import section index.
        section: usize,
        /// Cell index.
        cell: usize,
    },
    /// The stub of the `ResumptionStubEntryPoint` cell `import_sections[section].cells[cell]`.
    ResumptionStub {
        /// Import section index.
        section: usize,
        /// Cell index.
        cell: usize,
    },
}

impl Image {
    /// Encodes the image and reports the byte offset of every code reference, so a writer
    /// can relocate them (several sites share one offset when signatures are shared).
    ///
    /// # Errors
    /// As [`Image::encode`].
    pub fn encode_with_code_offsets(&self) -> Result<(Vec<u8>, CodeOffsets), FormatError> {
        let mut sites = Vec::new();
        let bytes = self.encode_into(&mut sites)?;
        Ok((bytes, sites))
    }

    /// Encodes the image (layout in `docs/image-format.md`). Identical fixup signatures are
    /// written once and shared; string thunks are written sorted by key (ordinal).
    ///
    /// # Errors
    /// [`FormatError::InvalidThunkKey`], [`FormatError::InvalidEntrySize`],
    /// [`FormatError::PortableEntryPointSignature`], [`FormatError::FixupOutOfRange`],
    /// [`FormatError::TooLarge`].
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        self.encode_into(&mut Vec::new())
    }

    fn encode_into(&self, sites: &mut Vec<(CodeRefSite, u32)>) -> Result<Vec<u8>, FormatError> {
        self.check()?;
        let mut sections: Vec<(SectionKind, Vec<u8>)> = Vec::new();
        if let Some(compiler) = &self.compiler {
            let mut bytes = compiler.as_bytes().to_vec();
            bytes.push(0);
            sections.push((SectionKind::CompilerIdentifier, bytes));
        }
        let descriptors_size = self.import_sections.len() * IMPORT_SECTION_SIZE as usize;
        sections.push((SectionKind::ImportSections, vec![0; descriptors_size]));
        let entry_table =
            |entries: &[MethodEntryPoint]| vec![0; 4 + entries.len() * METHOD_ENTRY_SIZE as usize];
        sections.push((
            SectionKind::MethodDefEntryPoints,
            entry_table(&self.method_entry_points),
        ));
        sections.push((
            SectionKind::InstanceMethodEntryPoints,
            entry_table(&self.instance_entry_points),
        ));

        // Header and directory.
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&MAJOR_VERSION.to_le_bytes());
        out.extend_from_slice(&self.minor_version.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
        let directory = out.len();
        out.resize(
            directory + sections.len() * DIRECTORY_ENTRY_SIZE as usize,
            0,
        );
        let mut section_rva = HashMap::new();
        for (i, (kind, bytes)) in sections.iter().enumerate() {
            align4(&mut out);
            let rva = rva(out.len())?;
            section_rva.insert(*kind, rva);
            let entry = directory + i * DIRECTORY_ENTRY_SIZE as usize;
            put_u32(&mut out, entry, *kind as u32);
            put_u32(&mut out, entry + 4, rva);
            put_u32(&mut out, entry + 8, bytes.len() as u32);
            out.extend_from_slice(bytes);
        }

        // Import cells, signature lists, signature blobs (shared when identical).
        let mut blobs: HashMap<Vec<u8>, u32> = HashMap::new();
        let descriptors = section_rva[&SectionKind::ImportSections] as usize;
        for (i, section) in self.import_sections.iter().enumerate() {
            align4(&mut out);
            let cells_rva = rva(out.len())?;
            for (c, cell) in section.cells.iter().enumerate() {
                let at = cells_rva + c as u32 * u32::from(section.entry_size);
                sites.push((
                    CodeRefSite::CellInitial {
                        section: i,
                        cell: c,
                    },
                    at,
                ));
                if section.kind == ImportSectionType::PORTABLE_ENTRY_POINT {
                    // [code, handle], each a pointer-sized word (checked: MethodEntry).
                    let handle = match &cell.signature {
                        FixupSignature::MethodEntry(m) => m.token,
                        _ => 0,
                    };
                    match section.entry_size {
                        16 => {
                            out.extend_from_slice(&u64::from(cell.initial).to_le_bytes());
                            out.extend_from_slice(&u64::from(handle).to_le_bytes());
                        }
                        _ => {
                            out.extend_from_slice(&cell.initial.to_le_bytes());
                            out.extend_from_slice(&handle.to_le_bytes());
                        }
                    }
                    continue;
                }
                match section.entry_size {
                    8 => out.extend_from_slice(&u64::from(cell.initial).to_le_bytes()),
                    _ => out.extend_from_slice(&cell.initial.to_le_bytes()),
                }
            }
            let cells_size = rva(out.len())? - cells_rva;
            let signatures_rva = rva(out.len())?;
            let list = out.len();
            out.resize(list + 4 * section.cells.len(), 0);
            for (c, cell) in section.cells.iter().enumerate() {
                let blob = signature_bytes(&cell.signature);
                let at = match blobs.get(&blob) {
                    Some(&at) => at,
                    None => {
                        let at = rva(out.len())?;
                        out.extend_from_slice(&blob);
                        blobs.insert(blob, at);
                        at
                    }
                };
                put_u32(&mut out, list + 4 * c, at);
                code_sites(&cell.signature, i, c, at, sites);
            }
            let d = descriptors + i * IMPORT_SECTION_SIZE as usize;
            put_u32(&mut out, d, cells_rva);
            put_u32(&mut out, d + 4, cells_size);
            out[d + 8..d + 10].copy_from_slice(&section.flags.0.to_le_bytes());
            out[d + 10] = section.kind.0;
            out[d + 11] = section.entry_size;
            put_u32(&mut out, d + 12, signatures_rva);
            put_u32(&mut out, d + 16, 0);
        }

        // Entry-point tables and their fixup lists.
        for (kind, entries) in [
            (SectionKind::MethodDefEntryPoints, &self.method_entry_points),
            (
                SectionKind::InstanceMethodEntryPoints,
                &self.instance_entry_points,
            ),
        ] {
            let table = section_rva[&kind] as usize;
            put_u32(&mut out, table, entries.len() as u32);
            for (e, entry) in entries.iter().enumerate() {
                let fixups = if entry.fixups.is_empty() {
                    0
                } else {
                    align4(&mut out);
                    let at = rva(out.len())?;
                    out.extend_from_slice(&(entry.fixups.len() as u32).to_le_bytes());
                    for f in &entry.fixups {
                        out.extend_from_slice(&f.section.to_le_bytes());
                        out.extend_from_slice(&f.cell.to_le_bytes());
                    }
                    at
                };
                let r = table + 4 + e * METHOD_ENTRY_SIZE as usize;
                let site = match kind {
                    SectionKind::MethodDefEntryPoints => CodeRefSite::MethodEntry(e),
                    _ => CodeRefSite::InstanceEntry(e),
                };
                sites.push((site, rva(r + 8)?));
                put_u32(&mut out, r, entry.method.token);
                put_u32(&mut out, r + 4, entry.method.flags.0);
                put_u32(&mut out, r + 8, entry.code);
                put_u32(&mut out, r + 12, fixups);
            }
        }
        rva(out.len())?;
        Ok(out)
    }

    fn check(&self) -> Result<(), FormatError> {
        for (i, section) in self.import_sections.iter().enumerate() {
            let portable = section.kind == ImportSectionType::PORTABLE_ENTRY_POINT;
            let sizes: &[u8] = if portable { &[8, 16] } else { &[4, 8] };
            if !sizes.contains(&section.entry_size) {
                return Err(FormatError::InvalidEntrySize {
                    section: i,
                    entry_size: section.entry_size,
                });
            }
            if portable
                && let Some(cell) = section
                    .cells
                    .iter()
                    .position(|c| !matches!(c.signature, FixupSignature::MethodEntry(_)))
            {
                return Err(FormatError::PortableEntryPointSignature { section: i, cell });
            }
            for cell in &section.cells {
                if let FixupSignature::InjectStringThunks(thunks) = &cell.signature
                    && let Some(bad) = thunks
                        .iter()
                        .find(|t| t.key.is_empty() || t.key.contains('\0'))
                {
                    return Err(FormatError::InvalidThunkKey {
                        key: bad.key.clone(),
                    });
                }
            }
        }
        for entry in self
            .method_entry_points
            .iter()
            .chain(&self.instance_entry_points)
        {
            for f in &entry.fixups {
                let exists = self
                    .import_sections
                    .get(f.section as usize)
                    .is_some_and(|s| (f.cell as usize) < s.cells.len());
                if !exists {
                    return Err(FormatError::FixupOutOfRange {
                        token: entry.method.token,
                        section: f.section,
                        cell: f.cell,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The code-reference sites inside the signature blob at `at` of cell `(section, cell)`.
fn code_sites(
    signature: &FixupSignature,
    section: usize,
    cell: usize,
    at: u32,
    sites: &mut Vec<(CodeRefSite, u32)>,
) {
    match signature {
        // kind byte, flags, token, then the stub.
        FixupSignature::ResumptionStubEntryPoint { .. } => {
            sites.push((CodeRefSite::ResumptionStub { section, cell }, at + 9));
        }
        FixupSignature::InjectStringThunks(thunks) => {
            // Written sorted by key: walk the sorted order, remember each thunk's model index.
            let mut order: Vec<usize> = (0..thunks.len()).collect();
            order.sort_by(|&a, &b| thunks[a].key.as_bytes().cmp(thunks[b].key.as_bytes()));
            let mut pos = at + 1;
            for thunk in order {
                pos += thunks[thunk].key.len() as u32 + 1;
                sites.push((
                    CodeRefSite::StringThunk {
                        section,
                        cell,
                        thunk,
                    },
                    pos,
                ));
                pos += 4;
            }
        }
        FixupSignature::MethodEntry(_)
        | FixupSignature::VirtualEntry(_)
        | FixupSignature::TypeHandle(_)
        | FixupSignature::FieldHandle(_)
        | FixupSignature::Helper(_)
        | FixupSignature::StringHandle(_)
        | FixupSignature::NewObject(_)
        | FixupSignature::NewArray(_)
        | FixupSignature::IsInstanceOf(_)
        | FixupSignature::ChkCast(_)
        | FixupSignature::FieldAddress(_) => {}
    }
}

/// The bytes of a fixup signature: kind byte + payload.
fn signature_bytes(signature: &FixupSignature) -> Vec<u8> {
    let mut out = vec![signature.kind()];
    let method = |out: &mut Vec<u8>, m: &MethodRef| {
        out.extend_from_slice(&m.flags.0.to_le_bytes());
        out.extend_from_slice(&m.token.to_le_bytes());
    };
    match signature {
        FixupSignature::MethodEntry(m) | FixupSignature::VirtualEntry(m) => method(&mut out, m),
        FixupSignature::Helper(id)
        | FixupSignature::TypeHandle(id)
        | FixupSignature::FieldHandle(id)
        | FixupSignature::StringHandle(id)
        | FixupSignature::NewObject(id)
        | FixupSignature::NewArray(id)
        | FixupSignature::IsInstanceOf(id)
        | FixupSignature::ChkCast(id)
        | FixupSignature::FieldAddress(id) => out.extend_from_slice(&id.to_le_bytes()),
        FixupSignature::ResumptionStubEntryPoint { method: m, stub } => {
            method(&mut out, m);
            out.extend_from_slice(&stub.to_le_bytes());
        }
        FixupSignature::InjectStringThunks(thunks) => {
            let mut sorted: Vec<&StringThunk> = thunks.iter().collect();
            sorted.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
            for t in sorted {
                out.extend_from_slice(t.key.as_bytes());
                out.push(0);
                out.extend_from_slice(&t.code.to_le_bytes());
            }
            out.push(0);
        }
    }
    out
}

fn align4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn rva(len: usize) -> Result<u32, FormatError> {
    u32::try_from(len).map_err(|_| FormatError::TooLarge)
}

fn put_u32(out: &mut [u8], at: usize, value: u32) {
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
}
