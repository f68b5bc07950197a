"""The real npm packages swe-js injects bugs into, and the hidden suites written for them.

The packages are installed by `make setup` (`npm ci` into data/swe_js/npm, exact pins in its
package-lock.json); a task stores only its mutation hunks and the hash of each mutated file, and
rebuilds the rest from this install, so a different version is refused by name rather than
silently giving a task whose bug no longer applies.

npm tarballs rarely ship tests, so each package has a suite written for forgerl (suites/*.cases),
one expression per test with its expected value, because the verifier evaluates expressions in
the sandbox and compares the values on the host (judge.py). Suite format, line by line:

    @prelude <JS code run before the tests; "@/" is the package root>
    @target NAME MODULE FUNCTION...     a tested unit, its file, the functions its bugs go into
    NAME__case: <JS expression> ==> <expected value, JSON or undefined/NaN>
    NAME__case: <JS expression> !!> <name of the error it throws>
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from forgerl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[4]
NPM_DIR = ROOT / "data" / "swe_js" / "npm"
SUITES_DIR = Path(__file__).parent / "suites"
INSTALL_COMMAND = "npm ci --prefix data/swe_js/npm --ignore-scripts --no-audit --no-fund"
MAX_SOURCE_BYTES = 1_000_000


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    suite: str  # file name under suites/


PACKAGES: tuple[NpmPackage, ...] = (
    NpmPackage("semver", "7.6.3", "semver.cases"),
    NpmPackage("ms", "2.1.3", "ms.cases"),
    NpmPackage("camelcase", "6.3.0", "camelcase.cases"),
    NpmPackage("natural-compare", "1.4.0", "natural-compare.cases"),
    NpmPackage("pluralize", "8.0.0", "pluralize.cases"),
)


def package_by_name(name: str) -> NpmPackage:
    for package in PACKAGES:
        if package.name == name:
            return package
    raise ConfigError(f"unknown swe-js package {name!r}; known: {', '.join(p.name for p in PACKAGES)}")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def package_dir(package: NpmPackage) -> Path:
    return NPM_DIR / "node_modules" / package.name


def require_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise ConfigError("swe-js needs Node.js (`node` on PATH); install nodejs (Node 20 is what the tasks were built with)")
    return node


@cache
def installed_sources(name: str) -> dict[str, str]:
    """The package's JavaScript files (relative path -> text) as installed, at the pinned version;
    ConfigError naming the install command when they are missing or another version is there."""
    package = package_by_name(name)
    root = package_dir(package)
    manifest = root / "package.json"
    if not manifest.is_file():
        hint = "" if shutil.which("npm") else " (npm is not on PATH: install nodejs and npm first)"
        raise ConfigError(f"the npm package {package.name} is not installed under {NPM_DIR}; run `make setup` "
                          f"or `{INSTALL_COMMAND}`{hint}")
    version = json.loads(manifest.read_text(encoding="utf-8")).get("version")
    if version != package.version:
        raise ConfigError(f"{root} holds {package.name} {version}, but swe-js pins {package.version}; "
                          f"run `{INSTALL_COMMAND}`")
    files = {}
    for path in sorted(root.rglob("*.js")):
        rel = path.relative_to(root).as_posix()
        if "node_modules" in rel.split("/") or path.stat().st_size > MAX_SOURCE_BYTES:
            continue
        files[rel] = path.read_text(encoding="utf-8")
    return files


# --- suites ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A tested unit: its tests are named `NAME__case`; bugs go into `functions` of `module`."""

    name: str
    module: str
    functions: tuple[str, ...]


@dataclass(frozen=True)
class Case:
    name: str
    expr: str
    expect: str  # JSON text (or undefined/NaN) when `throws` is empty
    throws: str = ""

    @property
    def target(self) -> str:
        return self.name.split("__", 1)[0]


@dataclass(frozen=True)
class Suite:
    package: str
    prelude: str
    targets: tuple[Target, ...]
    cases: tuple[Case, ...]

    def target(self, name: str) -> Target:
        for target in self.targets:
            if target.name == name:
                return target
        raise ConfigError(f"suite of {self.package} has no target {name!r}")

    def names(self) -> list[str]:
        return [c.name for c in self.cases]

    def names_of(self, target: str) -> list[str]:
        return [c.name for c in self.cases if c.target == target]

    def select(self, names: list[str] | set[str]) -> tuple[Case, ...]:
        keep = set(names)
        return tuple(c for c in self.cases if c.name in keep)


_CASE = re.compile(r"^(?P<name>[A-Za-z_$][\w$.]*__\w+): (?P<expr>.+?)(?: (?P<sep>==>|!!>) (?P<rhs>.+))?$")


def parse_suite(package: str, text: str, *, require_expectations: bool = True) -> Suite:
    prelude, targets, cases = "", [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("@prelude "):
            prelude = line[len("@prelude ") :]
        elif line.startswith("@target "):
            parts = line.split()[1:]
            if len(parts) < 3:
                raise ConfigError(f"{package} suite line {number}: @target needs NAME MODULE FUNCTION...")
            targets.append(Target(parts[0], parts[1], tuple(parts[2:])))
        elif match := _CASE.match(line):
            if match["sep"] is None and require_expectations:
                raise ConfigError(f"{package} suite line {number}: test {match['name']} has no expectation")
            throws = match["rhs"] if match["sep"] == "!!>" else ""
            expect = match["rhs"] if match["sep"] == "==>" else ""
            cases.append(Case(match["name"], match["expr"], expect, throws))
        else:
            raise ConfigError(f"{package} suite line {number} is not a test, @prelude or @target: {line[:80]!r}")
    known = {t.name for t in targets}
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ConfigError(f"{package} suite has duplicate test names")
    stray = sorted({c.target for c in cases} - known)
    if stray:
        raise ConfigError(f"{package} suite: tests of undeclared targets {stray}")
    return Suite(package, prelude, tuple(targets), tuple(cases))


@cache
def load_suite(name: str) -> Suite:
    package = package_by_name(name)
    return parse_suite(package.name, (SUITES_DIR / package.suite).read_text(encoding="utf-8"))
