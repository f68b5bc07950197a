#!/usr/bin/env sh
# Installs the system tools forgerl's sandbox uses (bubblewrap). Idempotent: does nothing when
# bwrap is already there. Never fails the caller: when it cannot install (not root, no apt-get),
# it says so and exits 0 — the sandbox then falls back to `unshare` or an unisolated subprocess,
# and warns loudly about it.
set -u
if command -v bwrap >/dev/null 2>&1; then
    echo "install_system_deps: bubblewrap already installed ($(command -v bwrap)); nothing to do"
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install_system_deps: bubblewrap missing and not running as root; NOT installed." >&2
    echo "  install it yourself: sudo apt-get install -y bubblewrap (or your distro's package)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps: bubblewrap missing and apt-get not available; NOT installed." >&2
    echo "  install the 'bubblewrap' package with your system's package manager" >&2
    exit 0
fi
echo "install_system_deps: installing bubblewrap with apt-get"
if DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap; then
    echo "install_system_deps: installed $(bwrap --version)"
else
    echo "install_system_deps: apt-get could not install bubblewrap; NOT installed (see errors above)" >&2
fi
exit 0
