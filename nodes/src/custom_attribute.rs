//! Custom-attribute value blobs (ECMA-335 II.23.3), which `cildec` leaves undecoded.
//!
//! A blob is the prolog `0x0001`, the fixed arguments in the order of the constructor's
//! parameters, then `NumNamed` (u16) named arguments, each `0x53` (field) or `0x54`
//! (property), a `FieldOrPropType`, the name as a `SerString` and the value. Fixed
//! arguments need the constructor's parameter types, which the caller passes as
//! [`ElementType`]s; named arguments carry their own.
//!
//! ```
//! use crossgraph_nodes::custom_attribute::{decode, AttributeValue};
//! // [UnmanagedCallersOnly(EntryPoint = "uco_add")]
//! let blob = b"\x01\x00\x01\x00\x53\x0e\x0aEntryPoint\x07uco_add";
//! let value = decode(blob, &[]).unwrap();
//! assert_eq!(value.named("EntryPoint"), Some(&AttributeValue::String(Some("uco_add".into()))));
//! ```

/// The type of a fixed argument or a named argument's value (II.23.3 `FieldOrPropType`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElementType {
    /// `bool` (0x02).
    Boolean,
    /// `char` (0x03).
    Char,
    /// `int8` (0x04).
    I1,
    /// `uint8` (0x05).
    U1,
    /// `int16` (0x06).
    I2,
    /// `uint16` (0x07).
    U2,
    /// `int32` (0x08).
    I4,
    /// `uint32` (0x09).
    U4,
    /// `int64` (0x0a).
    I8,
    /// `uint64` (0x0b).
    U8,
    /// `float32` (0x0c).
    R4,
    /// `float64` (0x0d).
    R8,
    /// `string` (0x0e).
    String,
    /// `System.Type` (0x50), serialized as its name.
    Type,
    /// A boxed value (0x51): the value is preceded by its own type.
    Boxed,
    /// An enum with this underlying type (0x55 in named arguments, whose name is skipped).
    Enum(Box<ElementType>),
    /// A single-dimensional array (0x1d) of this element type.
    SzArray(Box<ElementType>),
}

/// A decoded argument value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    /// `bool`.
    Bool(bool),
    /// `char`, as its UTF-16 code unit.
    Char(u16),
    /// Any signed integer (and enum values), widened.
    Int(i64),
    /// Any unsigned integer, widened.
    UInt(u64),
    /// `float32` or `float64`, widened.
    Float(f64),
    /// A string (`None` for the null string, `0xff`).
    String(Option<String>),
    /// A `System.Type`, by its serialized name (`None` for null).
    Type(Option<String>),
    /// An array (`None` for a null array).
    Array(Option<Vec<AttributeValue>>),
}

/// A named argument.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedArgument {
    /// `true` for a field (0x53), `false` for a property (0x54).
    pub is_field: bool,
    /// The field or property name.
    pub name: String,
    /// Its value.
    pub value: AttributeValue,
}

/// A decoded custom-attribute blob.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DecodedAttribute {
    /// Fixed (constructor) arguments, in order.
    pub fixed: Vec<AttributeValue>,
    /// Named arguments, in blob order.
    pub named: Vec<NamedArgument>,
}

impl DecodedAttribute {
    /// The value of the named argument `name` (field or property), if present.
    pub fn named(&self, name: &str) -> Option<&AttributeValue> {
        self.named.iter().find(|a| a.name == name).map(|a| &a.value)
    }
}

/// Why a blob cannot be decoded; `offset` is the byte offset in the blob.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("custom attribute blob, offset {offset}: {message}")]
pub struct AttributeBlobError {
    /// Byte offset in the blob.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

struct Reader<'b> {
    blob: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn fail<T>(&self, message: impl Into<String>) -> Result<T, AttributeBlobError> {
        Err(AttributeBlobError {
            offset: self.at,
            message: message.into(),
        })
    }

    fn bytes(&mut self, n: usize) -> Result<&'b [u8], AttributeBlobError> {
        match self.blob.get(self.at..self.at.saturating_add(n)) {
            Some(b) if self.at.checked_add(n).is_some() => {
                self.at += n;
                Ok(b)
            }
            _ => self.fail(format!("{n} bytes expected, the blob ends")),
        }
    }

    fn u8(&mut self) -> Result<u8, AttributeBlobError> {
        Ok(self.bytes(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AttributeBlobError> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// A compressed unsigned integer (II.23.2).
    fn compressed(&mut self) -> Result<u32, AttributeBlobError> {
        let first = self.u8()?;
        Ok(match first {
            b if b & 0x80 == 0 => u32::from(b),
            b if b & 0xc0 == 0x80 => (u32::from(b & 0x3f) << 8) | u32::from(self.u8()?),
            b if b & 0xe0 == 0xc0 => {
                let rest = self.array::<3>()?;
                (u32::from(b & 0x1f) << 24)
                    | (u32::from(rest[0]) << 16)
                    | (u32::from(rest[1]) << 8)
                    | u32::from(rest[2])
            }
            _ => return self.fail("invalid compressed integer"),
        })
    }

    /// A `SerString`: `0xff` for null, else a compressed length and UTF-8 bytes.
    fn ser_string(&mut self) -> Result<Option<String>, AttributeBlobError> {
        if self.blob.get(self.at) == Some(&0xff) {
            self.at += 1;
            return Ok(None);
        }
        let len = self.compressed()? as usize;
        let start = self.at;
        let bytes = self.bytes(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Some(s.to_owned())),
            Err(_) => Err(AttributeBlobError {
                offset: start,
                message: "string is not UTF-8".into(),
            }),
        }
    }

    /// A `FieldOrPropType` (named arguments and boxed values).
    fn field_or_prop_type(&mut self) -> Result<ElementType, AttributeBlobError> {
        let tag = self.u8()?;
        Ok(match tag {
            0x1d => ElementType::SzArray(Box::new(self.field_or_prop_type()?)),
            0x55 => {
                // The enum's type name; its underlying type is not in the blob. Enums in
                // attribute blobs are int32-based in practice; others cannot be decoded
                // without resolving the enum type.
                let name = self.ser_string()?;
                return self.fail(format!(
                    "enum argument of type {name:?}: its underlying type needs the enum's \
                     definition"
                ));
            }
            other => match simple(other) {
                Some(t) => t,
                None => return self.fail(format!("unknown element type 0x{other:02x}")),
            },
        })
    }

    fn value(&mut self, ty: &ElementType) -> Result<AttributeValue, AttributeBlobError> {
        use AttributeValue as V;
        Ok(match ty {
            ElementType::Boolean => V::Bool(self.u8()? != 0),
            ElementType::Char => V::Char(u16::from_le_bytes(self.array()?)),
            ElementType::I1 => V::Int(i64::from(self.u8()? as i8)),
            ElementType::U1 => V::UInt(u64::from(self.u8()?)),
            ElementType::I2 => V::Int(i64::from(i16::from_le_bytes(self.array()?))),
            ElementType::U2 => V::UInt(u64::from(u16::from_le_bytes(self.array()?))),
            ElementType::I4 => V::Int(i64::from(i32::from_le_bytes(self.array()?))),
            ElementType::U4 => V::UInt(u64::from(u32::from_le_bytes(self.array()?))),
            ElementType::I8 => V::Int(i64::from_le_bytes(self.array()?)),
            ElementType::U8 => V::UInt(u64::from_le_bytes(self.array()?)),
            ElementType::R4 => V::Float(f64::from(f32::from_le_bytes(self.array()?))),
            ElementType::R8 => V::Float(f64::from_le_bytes(self.array()?)),
            ElementType::String => V::String(self.ser_string()?),
            ElementType::Type => V::Type(self.ser_string()?),
            ElementType::Enum(underlying) => self.value(underlying)?,
            ElementType::Boxed => {
                let inner = self.field_or_prop_type()?;
                self.value(&inner)?
            }
            ElementType::SzArray(element) => {
                let count = u32::from_le_bytes(self.array()?);
                if count == u32::MAX {
                    V::Array(None)
                } else {
                    // Every element takes at least one byte: bound the allocation.
                    if count as usize > self.blob.len() - self.at {
                        return self.fail(format!("array of {count} elements exceeds the blob"));
                    }
                    let mut items = Vec::with_capacity(count as usize);
                    for _ in 0..count {
                        items.push(self.value(element)?);
                    }
                    V::Array(Some(items))
                }
            }
        })
    }
}

fn simple(tag: u8) -> Option<ElementType> {
    Some(match tag {
        0x02 => ElementType::Boolean,
        0x03 => ElementType::Char,
        0x04 => ElementType::I1,
        0x05 => ElementType::U1,
        0x06 => ElementType::I2,
        0x07 => ElementType::U2,
        0x08 => ElementType::I4,
        0x09 => ElementType::U4,
        0x0a => ElementType::I8,
        0x0b => ElementType::U8,
        0x0c => ElementType::R4,
        0x0d => ElementType::R8,
        0x0e => ElementType::String,
        0x50 => ElementType::Type,
        0x51 => ElementType::Boxed,
        _ => return None,
    })
}

/// Decodes a custom-attribute value blob whose constructor takes `fixed` parameters.
///
/// # Errors
/// [`AttributeBlobError`] with the offset of the first byte that does not fit the grammar
/// (bad prolog, truncated value, unknown element type, trailing bytes). Never panics.
pub fn decode(blob: &[u8], fixed: &[ElementType]) -> Result<DecodedAttribute, AttributeBlobError> {
    let mut r = Reader { blob, at: 0 };
    if r.array::<2>()? != [0x01, 0x00] {
        return Err(AttributeBlobError {
            offset: 0,
            message: "prolog is not 0x0001".into(),
        });
    }
    let mut out = DecodedAttribute::default();
    for ty in fixed {
        out.fixed.push(r.value(ty)?);
    }
    let count = u16::from_le_bytes(r.array()?);
    for _ in 0..count {
        let kind = r.u8()?;
        let is_field = match kind {
            0x53 => true,
            0x54 => false,
            other => return r.fail(format!("named argument kind 0x{other:02x}")),
        };
        let ty = r.field_or_prop_type()?;
        let name = r.ser_string()?.ok_or_else(|| AttributeBlobError {
            offset: r.at,
            message: "named argument without a name".into(),
        })?;
        let value = r.value(&ty)?;
        out.named.push(NamedArgument {
            is_field,
            name,
            value,
        });
    }
    if r.at != blob.len() {
        return r.fail(format!("{} trailing bytes", blob.len() - r.at));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_named_arguments_decode() {
        // [Attr(42, "x", new[] { 1, 2 }, CallConvs = new[] { typeof(CallConvCdecl) })]
        let mut blob = vec![0x01, 0x00];
        blob.extend(42i32.to_le_bytes());
        blob.extend([0x01, b'x']);
        blob.extend(2u32.to_le_bytes());
        blob.extend(1i32.to_le_bytes());
        blob.extend(2i32.to_le_bytes());
        blob.extend(1u16.to_le_bytes());
        blob.extend([0x53, 0x1d, 0x50, 9]);
        blob.extend(b"CallConvs");
        blob.extend(1u32.to_le_bytes());
        let name = b"System.Runtime.CompilerServices.CallConvCdecl";
        blob.push(name.len() as u8);
        blob.extend(name);
        let fixed = [
            ElementType::I4,
            ElementType::String,
            ElementType::SzArray(Box::new(ElementType::I4)),
        ];
        let d = decode(&blob, &fixed).unwrap();
        assert_eq!(
            d.fixed,
            vec![
                AttributeValue::Int(42),
                AttributeValue::String(Some("x".into())),
                AttributeValue::Array(Some(vec![AttributeValue::Int(1), AttributeValue::Int(2)])),
            ]
        );
        assert_eq!(
            d.named("CallConvs"),
            Some(&AttributeValue::Array(Some(vec![AttributeValue::Type(
                Some("System.Runtime.CompilerServices.CallConvCdecl".into())
            )])))
        );
        assert!(d.named[0].is_field);
    }

    #[test]
    fn null_strings_and_properties_decode() {
        let blob = b"\x01\x00\xff\x01\x00\x54\x02\x04Flag\x01";
        let d = decode(blob, &[ElementType::String]).unwrap();
        assert_eq!(d.fixed, vec![AttributeValue::String(None)]);
        assert_eq!(d.named("Flag"), Some(&AttributeValue::Bool(true)));
        assert!(!d.named[0].is_field);
    }

    #[test]
    fn malformed_blobs_name_the_offset() {
        let err = decode(b"\x02\x00\x00\x00", &[]).unwrap_err();
        assert_eq!(err.offset, 0);
        // Truncated string value.
        let err = decode(b"\x01\x00\x01\x00\x53\x0e\x02EP\x07uco", &[]).unwrap_err();
        assert!(err.message.contains("ends"), "{err}");
        assert_eq!(err.offset, 10);
        let err = decode(b"\x01\x00\x00\x00\xaa", &[]).unwrap_err();
        assert!(err.message.contains("trailing"), "{err}");
        let err = decode(b"\x01\x00\x01\x00\x53\x77", &[]).unwrap_err();
        assert!(err.message.contains("0x77"), "{err}");
        // A huge array count does not allocate.
        let err = decode(
            b"\x01\x00\xff\xff\xff\x7f",
            &[ElementType::SzArray(Box::new(ElementType::I4))],
        )
        .unwrap_err();
        assert!(err.message.contains("exceeds"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(blob in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode(&blob, &[ElementType::I4, ElementType::String]);
        }
    }
}
