//! Fuzzes `Image::decode` on untrusted bytes. It must never panic, and whatever it accepts
//! must survive a round trip: `decode(encode(image)) == image`, and encoding is canonical
//! (`encode` of the re-decoded image gives the same bytes).
#![no_main]

use crossgraph_runtime_core::format::Image;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(image) = Image::decode(bytes) else {
        return;
    };
    let encoded = image.encode().expect("a decoded image re-encodes");
    let again = Image::decode(&encoded).expect("a re-encoded image decodes");
    assert_eq!(
        again, image,
        "decode(encode(decode(bytes))) != decode(bytes)"
    );
    let encoded_again = again.encode().expect("a decoded image re-encodes");
    assert_eq!(encoded_again, encoded, "encoding is not canonical");
});
