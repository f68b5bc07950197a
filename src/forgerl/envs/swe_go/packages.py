"""The real Go packages swe-go injects bugs into, and where their sources live.

Debian's `golang-*-dev` packages ship Go library sources *with their `_test.go` files* under
/usr/share/gocode/src, so a package's own tests are the hidden tests and nothing is downloaded. A
task stores the package, the file's sha256 and the edit; the workspace is rebuilt from the installed
sources, so a different Debian version is caught by the hash instead of producing silent nonsense.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from forgerl.errors import ConfigError

GOCODE = Path("/usr/share/gocode/src")
GO_FALLBACK = Path("/usr/bin/go")
INSTALL_HINT = "run scripts/install_system_deps.sh (or: apt-get install golang-go {debs})"


@dataclass(frozen=True)
class GoPackage:
    """A pure-Go library package from a Debian `-dev` package: import path, Debian name, and the
    Go package name its sources declare."""

    import_path: str
    deb: str
    name: str

    @property
    def directory(self) -> Path:
        return GOCODE / self.import_path

    @property
    def key(self) -> str:
        return self.import_path.rsplit("/", 1)[-1]


PACKAGES: tuple[GoPackage, ...] = (
    GoPackage("github.com/dustin/go-humanize", "golang-github-dustin-go-humanize-dev", "humanize"),
    GoPackage("github.com/iancoleman/strcase", "golang-github-iancoleman-strcase-dev", "strcase"),
    GoPackage("github.com/huandu/xstrings", "golang-github-huandu-xstrings-dev", "xstrings"),
    GoPackage("github.com/kballard/go-shellquote", "golang-github-kballard-go-shellquote-dev", "shellquote"),
    GoPackage("github.com/blang/semver", "golang-github-blang-semver-dev", "semver"),
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def package_by_path(import_path: str) -> GoPackage:
    for package in PACKAGES:
        if package.import_path == import_path:
            return package
    raise ConfigError(f"unknown swe-go package {import_path!r}; known: {', '.join(p.import_path for p in PACKAGES)}")


def check_toolchain() -> str:
    """The `go` binary, or a ConfigError naming the install command."""
    go = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.exists() else None)
    if go is None:
        raise ConfigError("swe-go needs the Go toolchain (`go`), which is not installed; "
                          + INSTALL_HINT.format(debs=" ".join(p.deb for p in PACKAGES)))
    return go


TEST_PATCHES: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "github.com/huandu/xstrings": {"util_test.go": (
        ('import (\n\t"strings"\n\t"testing"\n)', 'import (\n\t"sort"\n\t"strings"\n\t"testing"\n)'),
        ("\tfor k, v := range cases {\n\t\ts := converter(k)\n",
         "\tkeys := make([]string, 0, len(cases))\n\tfor k := range cases {\n\t\tkeys = append(keys, k)\n\t}\n"
         "\tsort.Strings(keys) // forgerl: one order, so the case a failure reports is the same every run\n"
         "\tfor _, k := range keys {\n\t\tv := cases[k]\n\t\ts := converter(k)\n"),
    )},
}
"""Edits to hidden tests that make what a failing test prints the same on every run, without changing
what it checks. xstrings' `runTestCases` stops at the first failing case of a Go map, whose order Go
randomises per run: which case an issue quotes (and whether a mutant looked flaky) varied between
builds. Iterating the keys sorted keeps the verdict — the test fails iff some case fails — and fixes
the report."""


def _patched(import_path: str, name: str, text: str) -> str:
    for old, new in TEST_PATCHES.get(import_path, {}).get(name, ()):
        if text.count(old) != 1:
            raise ConfigError(f"{name} of {import_path} is not the version swe-go was built from (a hidden-test patch "
                              "does not apply); reinstall the pinned Debian package or update TEST_PATCHES")
        text = text.replace(old, new)
    return text


@cache
def package_sources(import_path: str) -> dict[str, str]:
    """{file name: text} of the package directory's .go files (tests included, with TEST_PATCHES
    applied), top level only."""
    package = package_by_path(import_path)
    check_toolchain()
    if not package.directory.is_dir():
        raise ConfigError(f"the Go sources of {import_path} are not installed at {package.directory}; "
                          + INSTALL_HINT.format(debs=package.deb))
    files = {p.name: _patched(import_path, p.name, p.read_text(encoding="utf-8"))
             for p in sorted(package.directory.glob("*.go"))}
    if not any(name.endswith("_test.go") for name in files):
        raise ConfigError(f"{package.directory} holds no _test.go files; reinstall {package.deb}")
    return files


def code_files(import_path: str) -> dict[str, str]:
    """The package's non-test sources: what the agent edits and what the verifier copies back."""
    return {n: t for n, t in package_sources(import_path).items() if not n.endswith("_test.go")}


def test_files(import_path: str) -> dict[str, str]:
    """The package's own tests: the hidden tests."""
    return {n: t for n, t in package_sources(import_path).items() if n.endswith("_test.go")}
