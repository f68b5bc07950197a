"""The hidden benchmark of a perf task: a Go program that calls the slowed function on generated
inputs, built once per version, then timed by the host (wall time of the sandboxed process,
compile time excluded), the slow version and the candidate interleaved (tasktypes.PerfMeasurement).

Each timed run gets a fresh random seed, and the candidate's output (a hash of every result) must
equal the bug-free build's output on the same seed: a fast but wrong candidate, or one that caches
answers on disk between runs, gains nothing.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from forgerl.envs.swe.tasktypes import PerfMeasurement, PerfRule
from forgerl.envs.swe_go.gorun import BUILD_DIR, GO_ENV, go_limits, gopath_files, new_sandbox
from forgerl.envs.swe_go.packages import GoPackage

BENCH_PKG = "forgerlbench"
BENCH_LENGTHS = {"quadratic_scan": 12_000, "recomputed_copy": 40_000}
BENCH_CALLS = 3
RUN_WALL_S = 30.0
BENCH_TEMPLATE = """package main

import (
\t"fmt"
\t"hash/fnv"
\t"math/rand"
\t"os"
\t"strconv"

\tpkg "{import_path}"
)

const alphabet = "abcdefghijKLMNOPQRST0123456789 _-.:"

func randString(r *rand.Rand, n int) string {{
\tb := make([]byte, n)
\tfor i := range b {{
\t\tb[i] = alphabet[r.Intn(len(alphabet))]
\t}}
\treturn string(b)
}}

func call(r *rand.Rand) (out string) {{
\tdefer func() {{
\t\tif e := recover(); e != nil {{
\t\t\tout = fmt.Sprint("panic: ", e)
\t\t}}
\t}}()
{args}
\treturn fmt.Sprint(pkg.{function}({names}))
}}

func main() {{
\tseed, _ := strconv.ParseInt(os.Args[1], 10, 64)
\tr := rand.New(rand.NewSource(seed))
\th := fnv.New64a()
\tfor k := 0; k < {calls}; k++ {{
\t\tfmt.Fprint(h, call(r))
\t}}
\tfmt.Printf("%x\\n", h.Sum64())
}}
"""
_ARG = {
    "string": "randString(r, {n})", "int": "r.Intn(64)", "int64": "r.Int63n(1 << 40)", "uint64": "uint64(r.Int63())",
    "uint": "uint(r.Intn(1000))", "float64": "r.Float64() * 1e6", "bool": "r.Intn(2) == 0", "rune": "rune('a' + r.Intn(26))",
    "byte": "byte('a' + r.Intn(26))",
}  # fmt: skip


def bench_program(package: GoPackage, function: str, params: list[tuple[str, str]], length: int) -> str:
    args = "\n".join(f"\ta{i} := " + _ARG[t].format(n=length) for i, (_, t) in enumerate(params))
    names = ", ".join(f"a{i}" for i in range(len(params)))
    return BENCH_TEMPLATE.format(import_path=package.import_path, args=args, function=function, names=names,
                                 calls=BENCH_CALLS)  # fmt: skip


@dataclass(frozen=True)
class BenchResult:
    measurement: PerfMeasurement | None
    outputs_match: bool
    problem: str | None = None


async def measure(
    package: GoPackage, bench: str, slow: dict[str, str], candidate: dict[str, str], gold: dict[str, str],
    rule: PerfRule, *, wall_s: float = 240.0,
) -> BenchResult:
    """Build the benchmark against three versions of the package (slow, candidate, bug-free) and time
    slow vs candidate interleaved, `rule.repeats` times, checking the candidate's outputs."""
    versions = {"slow": slow, "candidate": candidate, "gold": gold}
    files: dict[str, str] = {}
    for version, code in versions.items():
        files.update(gopath_files(package.import_path, code, gopath=f"gopath-{version}"))
        files[f"gopath-{version}/src/{BENCH_PKG}/main.go"] = bench
    sandbox = new_sandbox(files, wall_s)
    try:
        for version in versions:
            cmd = GO_ENV.format(root="$PWD", gopath=f"gopath-{version}") + f"mkdir -p {BUILD_DIR} && go build -o {BUILD_DIR}/{version}.bin {BENCH_PKG}"
            res = await sandbox.run(cmd, limits=go_limits(120.0))
            if res.exit_code != 0:
                return BenchResult(None, False, f"the benchmark does not build against the {version} version: {res.stderr[-400:]}")
        slow_s: list[float] = []
        cand_s: list[float] = []
        for _ in range(rule.repeats):
            seed = str(secrets.randbelow(2**31))
            expected = await sandbox.run([f"{BUILD_DIR}/gold.bin", seed], limits=go_limits(RUN_WALL_S))
            for version, series in (("slow", slow_s), ("candidate", cand_s)):
                start = time.perf_counter()
                res = await sandbox.run([f"{BUILD_DIR}/{version}.bin", seed], limits=go_limits(RUN_WALL_S))
                series.append(time.perf_counter() - start)
                if res.exit_code != 0 or res.timed_out or res.stdout != expected.stdout:
                    what = "timed out" if res.timed_out else f"exit {res.exit_code}" if res.exit_code else "a different output"
                    return BenchResult(None, False, f"the {version} version's benchmark gave {what} than the bug-free one")
        return BenchResult(PerfMeasurement(tuple(slow_s), tuple(cand_s)), True)
    finally:
        await sandbox.close()
