"""The real packages the swe-bugfix family injects bugs into, pinned, and where their code lives.

A task never stores a package's source: it stores the package pin, the file's sha256 and the
mutation hunk, and the workspace is rebuilt from the installed (pinned) package. So the shipped
task set stays small, and a wrong version is caught by the hash instead of producing silent nonsense.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from forgerl.errors import ConfigError

SUITES_DIR = Path(__file__).parent / "suites"


@dataclass(frozen=True)
class Package:
    """A pip-installed pure-Python package: distribution name, pin, import name, and which of its
    files (relative to site-packages) make up a task workspace."""

    dist: str
    version: str
    import_name: str
    files: tuple[str, ...] | None = None  # None: every .py file of the package except tests/

    def root(self) -> Path:
        """site-packages directory holding the package, after checking the installed version."""
        try:
            installed = importlib.metadata.version(self.dist)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != self.version:
            raise ConfigError(
                f"swe-bugfix needs {self.dist}=={self.version} (found {installed or 'nothing'}); "
                f"install it with: pip install {self.dist}=={self.version}"
            )
        spec = importlib.util.find_spec(self.import_name)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"cannot locate the installed package {self.import_name!r}")
        return Path(next(iter(spec.submodule_search_locations))).parent

    def workspace_files(self) -> tuple[str, ...]:
        if self.files is not None:
            return self.files
        base = self.root()
        found = sorted(
            str(p.relative_to(base))
            for p in (base / self.import_name).rglob("*.py")
            if "tests" not in p.relative_to(base).parts
        )
        return tuple(found)


@dataclass(frozen=True)
class TargetModule:
    """One module file whose functions get bugs, and the hand-written suite that tests them."""

    package: Package
    module: str  # relative to site-packages, e.g. "toolz/itertoolz.py"
    suite: str  # file name under suites/

    @property
    def key(self) -> str:
        return self.module.removesuffix(".py").replace("/", ".").removesuffix(".__init__")


INFLECTION = Package("inflection", "0.5.1", "inflection")
TOOLZ = Package("toolz", "1.2.0", "toolz")
MORE_ITERTOOLS = Package("more-itertools", "11.2.1", "more_itertools")
HUMANIZE = Package("humanize", "4.17.0", "humanize")
BOLTONS = Package(
    "boltons",
    "26.2.0",
    "boltons",
    files=("boltons/__init__.py", "boltons/strutils.py", "boltons/iterutils.py", "boltons/typeutils.py"),
)

PACKAGES = (INFLECTION, TOOLZ, MORE_ITERTOOLS, HUMANIZE, BOLTONS)

TARGETS = (
    TargetModule(INFLECTION, "inflection/__init__.py", "test_inflection.py"),
    TargetModule(TOOLZ, "toolz/itertoolz.py", "test_toolz_itertoolz.py"),
    TargetModule(TOOLZ, "toolz/dicttoolz.py", "test_toolz_dicttoolz.py"),
    TargetModule(MORE_ITERTOOLS, "more_itertools/more.py", "test_more_itertools_more.py"),
    TargetModule(MORE_ITERTOOLS, "more_itertools/recipes.py", "test_more_itertools_recipes.py"),
    TargetModule(HUMANIZE, "humanize/number.py", "test_humanize_number.py"),
    TargetModule(HUMANIZE, "humanize/filesize.py", "test_humanize_filesize.py"),
    TargetModule(BOLTONS, "boltons/strutils.py", "test_boltons_strutils.py"),
    TargetModule(BOLTONS, "boltons/iterutils.py", "test_boltons_iterutils.py"),
)


def package_by_dist(dist: str) -> Package:
    for package in PACKAGES:
        if package.dist == dist:
            return package
    raise ConfigError(f"unknown package {dist!r}; known: {', '.join(p.dist for p in PACKAGES)}")


@cache
def _read_installed(root: str, rel: str) -> str:
    return (Path(root) / rel).read_text(encoding="utf-8")


def installed_sources(package: Package) -> dict[str, str]:
    """The package's workspace files as installed (the bug-free originals)."""
    root = str(package.root())
    return {rel: _read_installed(root, rel) for rel in package.workspace_files()}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def suite_text(name: str) -> str:
    path = SUITES_DIR / name
    if not path.is_file() or path.suffix != ".py" or path.parent != SUITES_DIR:
        raise ConfigError(f"no test suite {name!r} in {SUITES_DIR}")
    return path.read_text(encoding="utf-8")
