"""The sandbox holds for the Go toolchain: a Go program built and run the way swe-go runs the
agent's code has no network, cannot write outside its workspace, cannot read the pristine package
sources, and stays inside its memory and time limits."""

from __future__ import annotations

import asyncio

from forgerl.envs.swe_go.gorun import GO_ENV, go_limits, new_sandbox
from tests.envs.swe_go.conftest import HUMANIZE, needs_go

pytestmark = needs_go

PROBE = '''package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func try(name string, err error) {
	if err == nil {
		fmt.Println(name, "ALLOWED")
	} else {
		fmt.Println(name, "denied")
	}
}

func main() {
	switch os.Args[1] {
	case "probe":
		_, err := net.DialTimeout("tcp", "1.1.1.1:443", 2*time.Second)
		try("dial", err)
		_, err = net.LookupHost("example.com")
		try("dns", err)
		try("write-usr", os.WriteFile("/usr/share/gocode/src/planted.go", []byte("x"), 0o644))
		try("write-etc", os.WriteFile("/etc/forgerl-planted", []byte("x"), 0o644))
		_, err = os.ReadFile("/usr/share/gocode/src/''' + HUMANIZE + '''/comma.go")
		try("read-pristine", err)
		try("write-workspace", os.WriteFile("mine.txt", []byte("x"), 0o644))
	case "memory":
		big := make([]byte, 6<<30)
		for i := range big {
			big[i] = 1
		}
		fmt.Println("allocated", len(big))
	case "spin":
		for {
		}
	}
}
'''


def test_go_programs_stay_inside_the_sandbox() -> None:
    async def run() -> tuple[str, object, object]:
        sandbox = new_sandbox({"gopath/src/probe/main.go": PROBE}, 60.0)
        try:
            built = await sandbox.run(GO_ENV.format(root="$PWD", gopath="gopath") + "go build -o probe.bin probe && "
                                      "go get github.com/pkg/errors; echo built")  # fmt: skip
            assert "built" in built.stdout and not built.timed_out, built
            probe = await sandbox.run(["./probe.bin", "probe"], limits=go_limits(20))
            memory = await sandbox.run(["./probe.bin", "memory"], limits=go_limits(20))
            spin = await sandbox.run(["./probe.bin", "spin"], limits=go_limits(3))
            return probe.stdout, memory, spin
        finally:
            await sandbox.close()

    probe, memory, spin = asyncio.run(run())
    for name in ("dial", "dns", "write-usr", "write-etc", "read-pristine"):
        assert f"{name} denied" in probe, probe
    assert "write-workspace ALLOWED" in probe  # the probe itself ran
    assert memory.exit_code != 0 and "allocated" not in memory.stdout  # type: ignore[attr-defined]
    assert spin.timed_out  # type: ignore[attr-defined]
