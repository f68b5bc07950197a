"""Slow: no copy of a source dataset is readable anywhere the mle sandbox can see.

The fingerprints are data lines taken from the actual copies on this host (scikit-learn's data
files, scipy's test copies of iris), so a new copy in another format or package shows up here
when it reuses one of those lines. The same scan run on the host finds them: the scan works.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os

import pytest
import scipy
import sklearn

from forgerl.envs.mle import MleEnv, generate_task
from forgerl.envs.sandbox import Limits
from forgerl.types import ToolCall

SCAN = r'''
import gzip, json, os, sys
fingerprints = [f.encode() for f in json.loads(FINGERPRINTS)]
found = []
for root in ROOTS:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                if os.path.islink(path) or os.path.getsize(path) > 20_000_000:
                    continue
                with open(path, "rb") as f:
                    data = f.read()
                if path.endswith(".gz"):
                    data = gzip.decompress(data)[:50_000_000]
            except Exception:
                continue
            if any(fp in data for fp in fingerprints):
                found.append(path)
print("FOUND", json.dumps(found))
'''


def _fingerprints() -> list[str]:
    """The third line of each known copy (past headers) without its last field (the class, which
    another copy may spell differently): a row of the data itself."""
    data = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "data")
    copies = [os.path.join(data, n) for n in sorted(os.listdir(data)) if n.endswith((".csv", ".csv.gz"))]
    copies.append(os.path.join(os.path.dirname(scipy.__file__), "spatial", "tests", "data", "iris.txt"))
    lines = []
    for path in copies:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt") as f:
            line = [next(f) for _ in range(3)][2].strip()
        lines.append(line.rsplit("," if "," in line else " ", 1)[0])
    return [line for line in lines if len(line) >= 15]  # "2 110" (linnerud, unused) would match anything


def _scan_code(roots: list[str]) -> str:
    return f"FINGERPRINTS = {json.dumps(json.dumps(_fingerprints()))}\nROOTS = {roots!r}\n{SCAN}"


@pytest.mark.slow
def test_no_source_dataset_is_readable_inside_the_sandbox():
    import subprocess
    import sys

    from forgerl.envs.sandbox.base import python_roots

    roots = ["/usr", *python_roots()]
    packages = [os.path.dirname(sklearn.__file__), os.path.dirname(scipy.__file__)]
    host = subprocess.run([sys.executable, "-c", _scan_code(packages)], capture_output=True, text=True, timeout=280,
                          check=True)
    on_host = {os.path.basename(p) for p in json.loads(host.stdout.split("FOUND", 1)[1])}
    assert {"iris.csv", "wine_data.csv", "digits.csv.gz", "iris.txt", "iris.arff"} <= on_host  # the scan works
    env = MleEnv(limits=Limits(wall_s=280, cpu_s=280, memory_mb=2048))

    async def go() -> str:
        try:
            env.reset(generate_task(1, 1))
            return await env.execute(ToolCall(name="run_python", arguments={"code": _scan_code(roots)}))
        finally:
            await env.close()

    output = asyncio.run(go())
    assert "FOUND []" in output, output
