#!/usr/bin/env sh
# Installs the system tools forgerl uses: bubblewrap (the sandbox), chromium (the review app's
# browser tests, driven headless by Playwright; no browser download), and Go with the Debian Go
# library sources (tests included) the swe-go family injects bugs into. Idempotent: installs only what
# is missing. Never fails the caller: when it cannot install (not root, no apt-get), it says so and
# exits 0 — the sandbox then falls back to `unshare` or an unisolated subprocess (and warns loudly),
# and the browser tests are skipped with a reason.
set -u
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
# swe-go: the Go toolchain and the golang-*-dev packages (src/forgerl/envs/swe_go/packages.py)
command -v go >/dev/null 2>&1 || missing="$missing golang-go"
for pkg in dustin/go-humanize:golang-github-dustin-go-humanize-dev iancoleman/strcase:golang-github-iancoleman-strcase-dev \
           huandu/xstrings:golang-github-huandu-xstrings-dev kballard/go-shellquote:golang-github-kballard-go-shellquote-dev \
           blang/semver:golang-github-blang-semver-dev; do
    [ -d "/usr/share/gocode/src/github.com/${pkg%%:*}" ] || missing="$missing ${pkg#*:}"
done
if [ -z "$missing" ]; then
    echo "install_system_deps: bubblewrap, chromium, Go and the swe-go package sources already installed; nothing to do"
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps: missing:$missing; NOT installed (needs root and apt-get)." >&2
    echo "  install them yourself: sudo apt-get install -y$missing (or your distro's packages)" >&2
    exit 0
fi
echo "install_system_deps: installing$missing with apt-get"
# shellcheck disable=SC2086
if DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; then
    echo "install_system_deps: installed$missing"
else
    echo "install_system_deps: apt-get could not install$missing; NOT installed (see errors above)" >&2
fi
exit 0
