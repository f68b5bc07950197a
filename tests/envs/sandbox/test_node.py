"""The sandbox's guarantees hold for Node.js too (swe-js runs agent code and its tests with it):
no network, the memory and time limits stop a runaway process, and nothing is written outside
the workspace."""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid

import pytest

from forgerl.envs.sandbox import Limits, create_sandbox

pytestmark = [pytest.mark.anyio, pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")]

LIMITS = Limits(wall_s=10, cpu_s=10, memory_mb=1024, max_file_mb=4)


async def test_node_has_no_network(isolated_backend):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    script = (f"const net = require('net'); const s = net.connect({port}, '127.0.0.1');"
              "s.on('connect', () => { console.log('CONNECTED'); process.exit(0) });"
              "s.on('error', e => { console.log('ERR', e.code); process.exit(0) });"
              "require('dns').lookup('registry.npmjs.org', (e) => console.log('DNS', e ? e.code : 'resolved'))")
    try:
        async with create_sandbox({"net.js": script}, limits=LIMITS, backend=isolated_backend) as sb:
            result = await sb.run(["node", "net.js"])
    finally:
        server.close()
    assert "CONNECTED" not in result.stdout and "ERR" in result.stdout, result


async def test_node_memory_and_time_limits_hold(isolated_backend):
    hog = "const a = []; for (;;) a.push(Buffer.alloc(64 * 1024 * 1024, 1))"
    spin = "for (;;) {}"
    async with create_sandbox({"hog.js": hog, "spin.js": spin}, limits=LIMITS, backend=isolated_backend) as sb:
        memory = await sb.run(["node", "hog.js"])
        time = await sb.run(["node", "spin.js"], limits=Limits(wall_s=2, cpu_s=2, memory_mb=1024))
    assert memory.exit_code != 0 and not memory.timed_out, memory
    assert time.exit_code != 0 and time.duration_s < 6, time


async def test_node_cannot_write_outside_the_workspace(isolated_backend):
    marker = f"forgerl-node-{uuid.uuid4().hex}"
    targets = [f"/tmp/{marker}", f"/work/{marker}", f"../{marker}", os.path.join(os.path.dirname(__file__), marker)]
    script = (f"const fs = require('fs'); for (const p of {json.dumps(targets)}) {{ try {{ fs.writeFileSync(p, 'x'); "
              "console.log('WROTE', p) } catch (e) { console.log('DENIED', p, e.code) } } fs.writeFileSync('inside.txt', 'ok')")
    async with create_sandbox({"w.js": script}, limits=LIMITS, backend=isolated_backend) as sb:
        result = await sb.run(["node", "w.js"])
        assert sb.read_file("inside.txt") == "ok"
    for target in targets:
        host = os.path.normpath(os.path.join("/tmp", target)) if not target.startswith("/") else target
        assert not os.path.exists(host), f"{host} was written on the host"
    assert "DENIED" in result.stdout or "WROTE /tmp" in result.stdout  # /tmp inside is the sandbox's own
