//! Signature strings: the table of DESIGN.md's examples, error offsets, and proptest round
//! trips (encode -> parse -> encode, and parse never panics).

use crossgraph_codegen::{
    AbiType, LowerError, MethodAbi, ParamAbi, ParseErrorKind, PointerKind, PointerWidth, Primitive,
    ReturnAbi, SignatureError, SignatureParts, StructLayout, ThunkDirection, WasmSignature,
    WasmValueType, lower_signature,
};
use proptest::prelude::*;

const W32: PointerWidth = PointerWidth::Wasm32;

fn func_type(sig: &str) -> String {
    WasmSignature::parse(sig, W32)
        .unwrap_or_else(|e| panic!("{e}"))
        .func_type()
        .to_string()
}

#[test]
fn design_examples_have_the_expected_wasm_types() {
    let table = [
        ("vp", "[i32 i32] -> []"),
        ("iiip", "[i32 i32 i32 i32] -> [i32]"),
        ("lTlp", "[i32 i32 i64 i32] -> [i64]"),
        // this before the return buffer, always.
        ("S16Tip", "[i32 i32 i32 i32 i32] -> []"),
        ("vS24dp", "[i32 i32 f64 i32] -> []"),
        ("iii", "[i32 i32] -> [i32]"),
        ("VVp", "[i32 v128 i32] -> [v128]"),
        ("VVV", "[v128 v128] -> [v128]"),
        ("viaip", "[i32 i32 i32 i32 i32] -> []"),
        ("vA32p", "[i32 i32 i32] -> []"),
        ("vep", "[i32 i32] -> []"),
        ("S8ii", "[i32 i32 i32] -> []"),
    ];
    for (sig, expected) in table {
        assert_eq!(func_type(sig), expected, "{sig}");
        assert_eq!(WasmSignature::parse(sig, W32).unwrap().as_str(), sig);
    }
    let wasm64 = WasmSignature::parse("vTlap", PointerWidth::Wasm64).unwrap();
    assert!(wasm64.parts().generic_context && wasm64.parts().async_continuation);
    assert_eq!(
        wasm64.func_type().to_string(),
        "[i64 i64 i64 i64 i64] -> []"
    );
}

#[test]
fn lowering_builds_the_canonical_string() {
    let point = AbiType::Struct(StructLayout {
        size: 8,
        align: 4,
        fields: vec![AbiType::Primitive(Primitive::I32); 2],
    });
    let over_aligned = AbiType::Struct(StructLayout {
        size: 32,
        align: 16,
        fields: vec![AbiType::Vector128, AbiType::Vector128],
    });
    let wrapped_double = AbiType::Struct(StructLayout {
        size: 8,
        align: 8,
        fields: vec![AbiType::Primitive(Primitive::F64)],
    });
    let method = MethodAbi {
        ret: point.clone(),
        has_this: true,
        params: vec![
            AbiType::Primitive(Primitive::Bool),
            wrapped_double,
            point,
            over_aligned,
            AbiType::Pointer(PointerKind::ObjectRef),
        ],
        generic_context: true,
        async_call: true,
        unmanaged: false,
    };
    let sig = lower_signature(&method, W32).unwrap();
    assert_eq!(sig.as_str(), "S8TiaidS8A32ip");
    assert_eq!(
        sig.func_type().to_string(),
        "[i32 i32 i32 i32 i32 i32 f64 i32 i32 i32 i32] -> []"
    );
    assert_eq!(WasmSignature::parse(sig.as_str(), W32).unwrap(), sig);

    let uco = MethodAbi {
        ret: AbiType::Primitive(Primitive::I32),
        has_this: false,
        params: vec![AbiType::Primitive(Primitive::I32); 2],
        generic_context: false,
        async_call: false,
        unmanaged: true,
    };
    let uco = lower_signature(&uco, W32).unwrap();
    assert_eq!(uco.as_str(), "iii");
    assert_eq!(uco.thunk_key(ThunkDirection::InterpreterToR2R), "Miii");
}

#[test]
fn bad_input_is_a_typed_error_naming_the_item() {
    let void_param = MethodAbi {
        ret: AbiType::Void,
        has_this: false,
        params: vec![AbiType::Primitive(Primitive::I32), AbiType::Void],
        generic_context: false,
        async_call: false,
        unmanaged: false,
    };
    let err = lower_signature(&void_param, W32).unwrap_err();
    assert!(err.to_string().contains("parameter 1"), "{err}");

    let uco_instance = MethodAbi {
        has_this: true,
        unmanaged: true,
        ..void_param.clone()
    };
    let uco_instance = MethodAbi {
        params: vec![],
        ..uco_instance
    };
    assert!(matches!(
        lower_signature(&uco_instance, W32),
        Err(LowerError::Signature(
            SignatureError::ThisOnUnmanaged { .. }
        ))
    ));

    let cases = [
        ("", 0, ParseErrorKind::Empty),
        ("x", 0, ParseErrorKind::Unexpected('x')),
        ("vS", 2, ParseErrorKind::MissingSize),
        ("vS08p", 2, ParseErrorKind::NonCanonicalSize),
        ("vS0p", 2, ParseErrorKind::NonCanonicalSize),
        ("vS99999999999p", 2, ParseErrorKind::SizeTooLarge),
        ("vipi", 3, ParseErrorKind::TrailingCharacters),
        ("vTi", 1, ParseErrorKind::ThisOnUnmanaged),
        ("viTp", 2, ParseErrorKind::Unexpected('T')),
        ("vfap", 2, ParseErrorKind::Unexpected('a')),
        ("vié", 2, ParseErrorKind::Unexpected('é')),
    ];
    for (input, offset, kind) in cases {
        let err = WasmSignature::parse(input, W32).unwrap_err();
        assert_eq!((err.offset, err.kind), (offset, kind), "{input}: {err}");
        assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
    }
    let key = WasmSignature::parse_thunk_key("Xvp", W32).unwrap_err();
    assert_eq!(key.kind, ParseErrorKind::MissingKeyPrefix);
    let key = WasmSignature::parse_thunk_key("Ivq", W32).unwrap_err();
    assert_eq!((key.offset, key.kind), (2, ParseErrorKind::Unexpected('q')));
    let (dir, sig) = WasmSignature::parse_thunk_key("IS16Tip", W32).unwrap();
    assert_eq!(
        (dir, sig.as_str()),
        (ThunkDirection::R2RToInterpreter, "S16Tip")
    );
}

#[test]
fn generic_context_without_async_reads_back_as_a_parameter_and_stays_equal() {
    let with_ctx = WasmSignature::new(
        W32,
        SignatureParts {
            ret: ReturnAbi::Void,
            has_this: false,
            generic_context: true,
            async_continuation: false,
            params: vec![ParamAbi::Value(WasmValueType::F64)],
            managed: true,
        },
    )
    .unwrap();
    let raised = WasmSignature::parse(with_ctx.as_str(), W32).unwrap();
    assert!(!raised.parts().generic_context);
    assert_eq!(raised, with_ctx);
    assert_eq!(raised.func_type(), with_ctx.func_type());
}

fn value_type() -> impl Strategy<Value = WasmValueType> {
    prop_oneof![
        Just(WasmValueType::I32),
        Just(WasmValueType::I64),
        Just(WasmValueType::F32),
        Just(WasmValueType::F64),
        Just(WasmValueType::V128),
    ]
}

fn param() -> impl Strategy<Value = ParamAbi> {
    prop_oneof![
        value_type().prop_map(ParamAbi::Value),
        (1u32..100_000).prop_map(|size| ParamAbi::ByRef { size }),
        (1u32..100_000).prop_map(|size| ParamAbi::ByRefOverAligned { size }),
        Just(ParamAbi::Empty),
    ]
}

fn parts() -> impl Strategy<Value = SignatureParts> {
    let ret = prop_oneof![
        Just(ReturnAbi::Void),
        value_type().prop_map(ReturnAbi::Value),
        (1u32..u32::MAX).prop_map(|size| ReturnAbi::Buffer { size }),
    ];
    (
        ret,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(param(), 0..8),
        any::<bool>(),
    )
        .prop_map(
            |(ret, has_this, generic_context, async_continuation, params, managed)| {
                SignatureParts {
                    ret,
                    has_this: has_this && managed,
                    generic_context,
                    async_continuation,
                    params,
                    managed,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_parse_round_trips(parts in parts(), wide in any::<bool>()) {
        let pointer = if wide { PointerWidth::Wasm64 } else { PointerWidth::Wasm32 };
        let sig = WasmSignature::new(pointer, parts).unwrap();
        let raised = WasmSignature::parse(sig.as_str(), pointer).unwrap();
        prop_assert_eq!(raised.as_str(), sig.as_str());
        prop_assert_eq!(&raised, &sig);
        prop_assert_eq!(raised.func_type(), sig.func_type());
        for dir in [ThunkDirection::R2RToInterpreter, ThunkDirection::InterpreterToR2R] {
            let (d, keyed) = WasmSignature::parse_thunk_key(&sig.thunk_key(dir), pointer).unwrap();
            prop_assert_eq!(d, dir);
            prop_assert_eq!(keyed, sig.clone());
        }
    }

    #[test]
    fn parsing_arbitrary_strings_never_panics_and_accepts_only_canonical(
        text in "[vilfdVSAeTap0-9xé]{0,16}"
    ) {
        if let Ok(sig) = WasmSignature::parse(&text, W32) {
            prop_assert_eq!(sig.as_str(), text.as_str());
        }
    }
}
