//! Image decoder: bounds-checked reads, errors with offsets, never a panic on untrusted bytes.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use super::*;

/// How many bytes of decoded model an image may produce per byte of input (plus a fixed
/// allowance). Cells can share one signature, so without a budget a small image could
/// decode into gigabytes (found by fuzzing).
const EXPANSION_PER_BYTE: u64 = 64;
const EXPANSION_ALLOWANCE: u64 = 1 << 20;
/// Decoded-model cost of one cell, thunk or entry point beyond its string bytes.
const ITEM_COST: u64 = 32;

/// Bounds-checked little-endian reads over the image, and the decoding budget.
struct Reader<'a> {
    bytes: &'a [u8],
    budget: Cell<u64>,
}

impl Reader<'_> {
    /// Charges `cost` bytes of decoded model against the budget.
    fn charge(&self, offset: u64, cost: u64) -> Result<(), FormatError> {
        let left = self.budget.get();
        if cost > left {
            return Err(malformed(
                "image",
                offset,
                format!(
                    "decodes to more than {EXPANSION_PER_BYTE} times its size (shared signatures expand too far)"
                ),
            ));
        }
        self.budget.set(left - cost);
        Ok(())
    }

    fn slice(&self, what: &'static str, offset: u64, len: u64) -> Result<&[u8], FormatError> {
        let available = (self.bytes.len() as u64).saturating_sub(offset);
        if offset > self.bytes.len() as u64 || len > available {
            return Err(FormatError::Truncated {
                what,
                offset,
                needed: len,
                available,
            });
        }
        Ok(&self.bytes[offset as usize..(offset + len) as usize])
    }

    fn u8(&self, what: &'static str, offset: u64) -> Result<u8, FormatError> {
        Ok(self.slice(what, offset, 1)?[0])
    }

    fn u16(&self, what: &'static str, offset: u64) -> Result<u16, FormatError> {
        let b = self.slice(what, offset, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&self, what: &'static str, offset: u64) -> Result<u32, FormatError> {
        let b = self.slice(what, offset, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn malformed(what: &'static str, offset: u64, reason: impl Into<String>) -> FormatError {
    FormatError::Malformed {
        what,
        offset,
        reason: reason.into(),
    }
}

impl Image {
    /// Decodes an image.
    ///
    /// # Errors
    /// A [`FormatError`] naming the offset of the first problem. Unknown section kinds are
    /// skipped (newer minor versions may add sections).
    pub fn decode(bytes: &[u8]) -> Result<Image, FormatError> {
        let r = Reader {
            bytes,
            budget: Cell::new(
                (bytes.len() as u64)
                    .saturating_mul(EXPANSION_PER_BYTE)
                    .saturating_add(EXPANSION_ALLOWANCE),
            ),
        };
        let magic = r.slice("header", 0, u64::from(HEADER_SIZE))?;
        if magic[..4] != MAGIC {
            return Err(FormatError::BadMagic {
                found: [magic[0], magic[1], magic[2], magic[3]],
            });
        }
        let (major, minor) = (r.u16("header", 4)?, r.u16("header", 6)?);
        if major != MAJOR_VERSION {
            return Err(FormatError::UnsupportedVersion { major, minor });
        }
        let count = u64::from(r.u32("header", 12)?);
        let directory = u64::from(HEADER_SIZE);
        r.slice(
            "section directory",
            directory,
            count * u64::from(DIRECTORY_ENTRY_SIZE),
        )?;
        let mut sections: HashMap<SectionKind, (u64, u64)> = HashMap::new();
        let mut seen = HashSet::new();
        for i in 0..count {
            let at = directory + i * u64::from(DIRECTORY_ENTRY_SIZE);
            let kind = r.u32("section directory entry", at)?;
            let rva = u64::from(r.u32("section directory entry", at + 4)?);
            let size = u64::from(r.u32("section directory entry", at + 8)?);
            if !seen.insert(kind) {
                return Err(FormatError::DuplicateSection { kind, offset: at });
            }
            r.slice("section", rva, size)?;
            if let Some(kind) = SectionKind::from_u32(kind) {
                sections.insert(kind, (rva, size));
            }
        }

        let compiler = match sections.get(&SectionKind::CompilerIdentifier) {
            None => None,
            Some(&(rva, size)) => {
                let bytes = r.slice("compiler identifier", rva, size)?;
                let Some((0, text)) = bytes.split_last() else {
                    return Err(malformed("compiler identifier", rva, "not NUL-terminated"));
                };
                let text = std::str::from_utf8(text)
                    .map_err(|e| malformed("compiler identifier", rva, e.to_string()))?;
                Some(text.to_string())
            }
        };

        let mut import_sections = Vec::new();
        if let Some(&(rva, size)) = sections.get(&SectionKind::ImportSections) {
            if size % u64::from(IMPORT_SECTION_SIZE) != 0 {
                return Err(malformed(
                    "import sections",
                    rva,
                    format!("size {size} is not a multiple of {IMPORT_SECTION_SIZE}"),
                ));
            }
            for i in 0..size / u64::from(IMPORT_SECTION_SIZE) {
                import_sections.push(decode_import_section(
                    &r,
                    rva + i * u64::from(IMPORT_SECTION_SIZE),
                )?);
            }
        }

        let entries = |kind| match sections.get(&kind) {
            None => Ok(Vec::new()),
            Some(&(rva, size)) => decode_entry_points(&r, rva, size, &import_sections),
        };
        Ok(Image {
            minor_version: minor,
            compiler,
            method_entry_points: entries(SectionKind::MethodDefEntryPoints)?,
            instance_entry_points: entries(SectionKind::InstanceMethodEntryPoints)?,
            import_sections,
        })
    }
}

fn decode_import_section(r: &Reader<'_>, at: u64) -> Result<ImportSection, FormatError> {
    const WHAT: &str = "import section descriptor";
    let cells_rva = u64::from(r.u32(WHAT, at)?);
    let cells_size = u64::from(r.u32(WHAT, at + 4)?);
    let flags = ImportSectionFlags(r.u16(WHAT, at + 8)?);
    let kind = ImportSectionType(r.u8(WHAT, at + 10)?);
    let entry_size = r.u8(WHAT, at + 11)?;
    let signatures_rva = u64::from(r.u32(WHAT, at + 12)?);
    let portable = kind == ImportSectionType::PORTABLE_ENTRY_POINT;
    let sizes: &[u8] = if portable { &[8, 16] } else { &[4, 8] };
    if !sizes.contains(&entry_size) {
        let allowed = if portable { "8 or 16" } else { "4 or 8" };
        return Err(malformed(
            WHAT,
            at,
            format!("entry size {entry_size} (must be {allowed})"),
        ));
    }
    if cells_size % u64::from(entry_size) != 0 {
        return Err(malformed(
            WHAT,
            at,
            format!("cells size {cells_size} is not a multiple of entry size {entry_size}"),
        ));
    }
    let count = cells_size / u64::from(entry_size);
    r.slice("import cells", cells_rva, cells_size)?;
    r.slice("import signature list", signatures_rva, 4 * count)?;
    let mut cells = Vec::with_capacity(count as usize);
    for c in 0..count {
        let cell_at = cells_rva + c * u64::from(entry_size);
        // A portable entry point is two words; its first is the code, like a cell's.
        let word = if portable { entry_size / 2 } else { entry_size };
        let initial = match word {
            8 => {
                let b = r.slice("import cell", cell_at, 8)?;
                let wide = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                u32::try_from(wide)
                    .map_err(|_| malformed("import cell", cell_at, "value exceeds 32 bits"))?
            }
            _ => r.u32("import cell", cell_at)?,
        };
        let sig_rva = u64::from(r.u32("import signature list", signatures_rva + 4 * c)?);
        r.charge(cell_at, ITEM_COST)?;
        let signature = decode_signature(r, sig_rva)?;
        if portable {
            const PE: &str = "portable entry point";
            let FixupSignature::MethodEntry(method) = &signature else {
                return Err(malformed(
                    PE,
                    cell_at,
                    "signature is not a MethodEntry (0x13)",
                ));
            };
            let handle_at = cell_at + u64::from(word);
            let handle = match word {
                8 => {
                    let b = r.slice(PE, handle_at, 8)?;
                    u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
                }
                _ => u64::from(r.u32(PE, handle_at)?),
            };
            if handle != u64::from(method.token) {
                return Err(malformed(
                    PE,
                    handle_at,
                    format!(
                        "handle 0x{handle:x} differs from its MethodEntry token 0x{:08x}",
                        method.token
                    ),
                ));
            }
        }
        cells.push(ImportCell { initial, signature });
    }
    Ok(ImportSection {
        flags,
        kind,
        entry_size,
        cells,
    })
}

fn decode_method(r: &Reader<'_>, at: u64) -> Result<MethodRef, FormatError> {
    Ok(MethodRef {
        flags: MethodSigFlags(r.u32("method signature", at)?),
        token: r.u32("method signature", at + 4)?,
    })
}

/// Decodes the fixup signature at `at`.
fn decode_signature(r: &Reader<'_>, at: u64) -> Result<FixupSignature, FormatError> {
    let kind = r.u8("fixup signature", at)?;
    let payload = at + 1;
    Ok(match kind {
        fixup_kind::TYPE_HANDLE => FixupSignature::TypeHandle(r.u32("type handle fixup", payload)?),
        fixup_kind::FIELD_HANDLE => {
            FixupSignature::FieldHandle(r.u32("field handle fixup", payload)?)
        }
        fixup_kind::METHOD_ENTRY => FixupSignature::MethodEntry(decode_method(r, payload)?),
        fixup_kind::VIRTUAL_ENTRY => FixupSignature::VirtualEntry(decode_method(r, payload)?),
        fixup_kind::HELPER => FixupSignature::Helper(r.u32("helper fixup", payload)?),
        fixup_kind::STRING_HANDLE => {
            FixupSignature::StringHandle(r.u32("string handle fixup", payload)?)
        }
        fixup_kind::NEW_OBJECT => FixupSignature::NewObject(r.u32("new object fixup", payload)?),
        fixup_kind::NEW_ARRAY => FixupSignature::NewArray(r.u32("new array fixup", payload)?),
        fixup_kind::IS_INSTANCE_OF => {
            FixupSignature::IsInstanceOf(r.u32("is-instance-of fixup", payload)?)
        }
        fixup_kind::CHK_CAST => FixupSignature::ChkCast(r.u32("checked cast fixup", payload)?),
        fixup_kind::FIELD_ADDRESS => {
            FixupSignature::FieldAddress(r.u32("field address fixup", payload)?)
        }
        fixup_kind::RESUMPTION_STUB_ENTRY_POINT => FixupSignature::ResumptionStubEntryPoint {
            method: decode_method(r, payload)?,
            stub: r.u32("resumption stub fixup", payload + 8)?,
        },
        fixup_kind::INJECT_STRING_THUNKS => {
            let mut thunks: Vec<StringThunk> = Vec::new();
            let mut pos = payload;
            loop {
                let rest = r.slice("string thunk list", pos, 1)?;
                if rest[0] == 0 {
                    break;
                }
                let tail = r.slice("string thunk", pos, r.bytes.len() as u64 - pos)?;
                let Some(len) = tail.iter().position(|&b| b == 0) else {
                    return Err(malformed("string thunk", pos, "key is not NUL-terminated"));
                };
                let key = std::str::from_utf8(&tail[..len])
                    .map_err(|e| malformed("string thunk", pos, e.to_string()))?;
                let code = r.u32("string thunk code reference", pos + len as u64 + 1)?;
                r.charge(pos, ITEM_COST + len as u64)?;
                if thunks
                    .last()
                    .is_some_and(|t| t.key.as_bytes() >= key.as_bytes())
                {
                    return Err(malformed(
                        "string thunk",
                        pos,
                        "keys are not sorted and unique",
                    ));
                }
                thunks.push(StringThunk {
                    key: key.to_string(),
                    code,
                });
                pos += len as u64 + 5;
            }
            FixupSignature::InjectStringThunks(thunks)
        }
        kind => return Err(FormatError::UnknownFixupKind { kind, offset: at }),
    })
}

fn decode_entry_points(
    r: &Reader<'_>,
    rva: u64,
    size: u64,
    sections: &[ImportSection],
) -> Result<Vec<MethodEntryPoint>, FormatError> {
    const WHAT: &str = "method entry points";
    let count = u64::from(r.u32(WHAT, rva)?);
    if size != 4 + count * u64::from(METHOD_ENTRY_SIZE) {
        return Err(malformed(
            WHAT,
            rva,
            format!("{count} records do not fill {size} bytes"),
        ));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for e in 0..count {
        let at = rva + 4 + e * u64::from(METHOD_ENTRY_SIZE);
        let method = MethodRef {
            token: r.u32(WHAT, at)?,
            flags: MethodSigFlags(r.u32(WHAT, at + 4)?),
        };
        let code = r.u32(WHAT, at + 8)?;
        let fixups_rva = u64::from(r.u32(WHAT, at + 12)?);
        r.charge(at, ITEM_COST)?;
        let mut fixups = Vec::new();
        if fixups_rva != 0 {
            let n = u64::from(r.u32("method fixup list", fixups_rva)?);
            r.slice("method fixup list", fixups_rva + 4, 8 * n)?;
            r.charge(fixups_rva, 8 * n)?;
            for f in 0..n {
                let at = fixups_rva + 4 + 8 * f;
                let fixup = FixupRef {
                    section: r.u32("method fixup", at)?,
                    cell: r.u32("method fixup", at + 4)?,
                };
                let exists = sections
                    .get(fixup.section as usize)
                    .is_some_and(|s| (fixup.cell as usize) < s.cells.len());
                if !exists {
                    return Err(FormatError::FixupOutOfRange {
                        token: method.token,
                        section: fixup.section,
                        cell: fixup.cell,
                    });
                }
                fixups.push(fixup);
            }
        }
        entries.push(MethodEntryPoint {
            method,
            code,
            fixups,
        });
    }
    Ok(entries)
}
