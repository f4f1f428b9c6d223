#!/usr/bin/env bash
# Installs what the real-assembly tests read, when missing: Mono's class libraries
# (mscorlib.dll, System.dll, System.Core.dll, System.Xml.dll under /usr/lib/mono/4.5/) and the mcs C# compiler, from Debian;
# and Mono's IL assembler (ilasm.exe, used through scripts/ilasm) plus the IL
# disassembler ikdasm.exe.
#
# ilasm.exe ships only in the large mono-devel package, so that package is not
# installed: it is downloaded and just the two tools are extracted into
# $CROSSGRAPH_MONO_DEVEL (default /opt/crossgraph/mono-devel), keeping the
# package's layout (.../usr/lib/mono/4.5/ilasm.exe). ilasm.exe's one missing
# dependency, PEAPI.dll, comes from the small libmono-peapi4.0a-cil package.
# A second run finds everything in place and exits at once.
set -euo pipefail

MONO_DEVEL_DIR="${CROSSGRAPH_MONO_DEVEL:-/opt/crossgraph/mono-devel}"
TOOLS_DIR="usr/lib/mono/4.5"
TOOLS=(ilasm.exe ikdasm.exe)

have_runtime() {
    [ -f /usr/lib/mono/4.5/mscorlib.dll ] && [ -f /usr/lib/mono/4.5/System.dll ] \
        && [ -f /usr/lib/mono/4.5/System.Core.dll ] && [ -f /usr/lib/mono/4.5/System.Xml.dll ] \
        && [ -f /usr/lib/mono/4.5/Mono.Security.dll ] \
        && [ -f /usr/lib/mono/4.5/System.Configuration.dll ] \
        && command -v mcs >/dev/null 2>&1 \
        && command -v mono >/dev/null 2>&1 && [ -f /usr/lib/mono/4.5/PEAPI.dll ]
}
have_tools() {
    local t
    for t in "${TOOLS[@]}"; do
        [ -f "$MONO_DEVEL_DIR/$TOOLS_DIR/$t" ] || return 1
    done
}

if have_runtime && have_tools; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive

UPDATED=0
apt_update_once() {
    if [ "$UPDATED" -eq 0 ]; then
        echo "apt-get update ..."
        $SUDO apt-get update -qq
        UPDATED=1
    fi
}
# Runs "$@"; when it fails (stale or missing package lists), updates the lists
# once and tries again.
with_apt_retry() {
    if "$@"; then return 0; fi
    [ "$UPDATED" -eq 0 ] || return 1
    apt_update_once
    "$@"
}

# Without any package lists apt knows no candidates: update before the first try.
if ! apt-cache show mono-devel >/dev/null 2>&1; then
    apt_update_once
fi

if ! have_runtime; then
    echo "installing Mono's class libraries, mcs and PEAPI (apt) ..."
    with_apt_retry $SUDO apt-get install -y -qq --no-install-recommends \
        mono-mcs libmono-corlib4.5-cil libmono-system4.0-cil libmono-system-core4.0-cil \
        libmono-system-xml4.0-cil libmono-security4.0-cil libmono-system-configuration4.0-cil \
        libmono-peapi4.0a-cil >/dev/null
fi

if ! have_tools; then
    echo "extracting ilasm.exe and ikdasm.exe from mono-devel into $MONO_DEVEL_DIR ..."
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # apt drops privileges to _apt for downloads; let it write the download dir.
    if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
    download() { (cd "$work" && apt-get download -qq mono-devel); }
    with_apt_retry download
    deb="$(ls "$work"/mono-devel_*.deb)"
    mkdir -p "$work/x"
    members=()
    for t in "${TOOLS[@]}"; do members+=("./$TOOLS_DIR/$t"); done
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/x" "${members[@]}"
    $SUDO mkdir -p "$MONO_DEVEL_DIR/$TOOLS_DIR"
    # Copy then rename, so an interrupted run never leaves a truncated tool behind.
    for t in "${TOOLS[@]}"; do
        $SUDO install -m 644 "$work/x/$TOOLS_DIR/$t" "$MONO_DEVEL_DIR/$TOOLS_DIR/$t.tmp"
        $SUDO mv -f "$MONO_DEVEL_DIR/$TOOLS_DIR/$t.tmp" "$MONO_DEVEL_DIR/$TOOLS_DIR/$t"
    done
fi

if ! have_runtime || ! have_tools; then
    echo "install-mono.sh: installation incomplete" >&2
    exit 1
fi
