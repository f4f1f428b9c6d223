//! What the integration tests share: building C# sources with Mono's `mcs`.

use std::path::Path;
use std::process::Command;

/// The command that installs Mono (mcs, mscorlib and the class libraries).
pub const INSTALL: &str = "bash scripts/install-mono.sh";

/// Compiles the C# file `source` with `mcs` into `out` (`-target:library -optimize+` for a
/// library, an executable otherwise).
///
/// # Panics
/// If `mcs` cannot run (naming the install command) or rejects the source (with its errors).
pub fn mcs(source: &Path, out: &Path, library: bool) {
    let mut command = Command::new("mcs");
    if library {
        command.args(["-target:library", "-optimize+"]);
    }
    let result = command
        .arg(format!("-out:{}", out.display()))
        .arg(source)
        .output()
        .unwrap_or_else(|e| panic!("mcs cannot run ({e}): install it with `{INSTALL}`"));
    assert!(
        result.status.success(),
        "mcs {}: {}",
        source.display(),
        String::from_utf8_lossy(&result.stderr)
    );
}
