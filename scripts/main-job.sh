#!/usr/bin/env bash
# The main job: compile Mono's mscorlib.dll to a wasm ReadyToRun image, print the stats,
# list the image, and run a few compiled methods in wasmtime through the runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-mono.sh
cargo build --release --quiet
bin=target/release/crossgraph
mkdir -p target/main-job
$bin compile /usr/lib/mono/4.5/mscorlib.dll -o target/main-job/mscorlib.wasm \
    --stats target/main-job/mscorlib-stats.json --map target/main-job/mscorlib-map.csv
echo
$bin inspect target/main-job/mscorlib.wasm | head -n 12
echo
$bin inspect target/main-job/mscorlib.wasm --wat System.Math::BigMul
echo "  ... (full listing: $bin inspect target/main-job/mscorlib.wasm)"
echo
run() {
    printf '%-48s = ' "$1($(IFS=,; echo "${*:3}"))"
    $bin run target/main-job/mscorlib.wasm "$@"
}
run 'System.Math::BigMul' liip 123456 789012
run 'System.Char::IsLatin1' iip 200
run 'System.Char::IsLatin1' iip 300
run 'System.Decimal/DecCalc::UInt32x32To64' liip 4000000000 3
