#!/usr/bin/env bash
# Installs what the real-assembly tests read, when missing: Mono's class libraries
# (mscorlib.dll ... under /usr/lib/mono/4.5/) and the mcs C# compiler, from Debian.
set -euo pipefail
if [ -f /usr/lib/mono/4.5/mscorlib.dll ] && command -v mcs >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
echo "installing Mono's class libraries and mcs (apt) ..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    mono-mcs libmono-corlib4.5-cil
