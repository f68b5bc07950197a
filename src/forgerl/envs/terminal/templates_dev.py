"""Terminal templates about development work: git repositories, a broken build, a broken
service config. Each is `template(rng, difficulty) -> Draft` (draft.py)."""

from __future__ import annotations

import random

from forgerl.envs.terminal.checks import git_blob_sha
from forgerl.envs.terminal.draft import WORDS, Draft, heredoc, lines, shell

GIT_ENV = ("export GIT_AUTHOR_NAME='Dana Reyes' GIT_AUTHOR_EMAIL=dana@example.test "
           "GIT_COMMITTER_NAME='Dana Reyes' GIT_COMMITTER_EMAIL=dana@example.test\n")


def _commit(day: int, message: str) -> str:
    stamp = f"2024-05-{day:02d}T10:00:00Z"
    return f"git add -A && GIT_AUTHOR_DATE={stamp} GIT_COMMITTER_DATE={stamp} git commit -q -m '{message}'\n"


def _git_init() -> str:
    return ("set -e\n" + GIT_ENV + "git init -q -b main .\ngit config user.name 'Dana Reyes'\n"
            "git config user.email dana@example.test\n")


def git_template(rng: random.Random, difficulty: int) -> Draft:
    """Git. d1: commit the pending changes with a given message; d2: find the commit that
    introduced a string (look-alike strings in other commits); d3: merge a branch whose change
    conflicts with main, resolving the conflict as the request says."""
    module, other = rng.sample(WORDS, 2)
    base = f"# {module} settings\nname = {module}\nretries = {rng.randint(1, 5)}\ntimeout = {rng.randint(10, 50)}\n"
    setup = _git_init() + heredoc("config/settings.ini", base) + heredoc("README.md", f"# {module}\n") + _commit(1, "initial layout")
    history = 2
    for i in range(2 + difficulty):
        setup += heredoc(f"src/{WORDS[(i * 7) % len(WORDS)]}.txt", lines(rng, 3)) + _commit(2 + i, f"add notes part {i + 1}")
        history += 1
    probes: dict = {"base": {"git": ["rev-parse", "HEAD"]}}
    if difficulty == 1:
        message = f"Update {module} timeout"
        changed = base.replace("timeout = ", "timeout = 1")
        new_file = f"docs/{other}.md"
        new_text = f"# {other}\n" + lines(rng, 2)
        setup += heredoc("config/settings.ini", changed) + heredoc(new_file, new_text)
        request = (f"The git repository in the workspace has uncommitted work: a change to `config/settings.ini` and a "
                   f"new file `{new_file}`. Commit both, on the current branch, in one commit with the message "
                   f"`{message}`. Do not rewrite the existing history.")
        checks = [{"op": "git", "name": "message", "args": ["log", "-1", "--format=%s", "HEAD"], "text": message},
                  {"op": "git", "name": "one new commit", "args": ["rev-parse", "HEAD~1"], "probe": "base"},
                  {"op": "git", "name": "settings committed", "args": ["rev-parse", "HEAD:config/settings.ini"], "text": git_blob_sha(changed.encode())},
                  {"op": "git", "name": "new file committed", "args": ["rev-parse", f"HEAD:{new_file}"], "text": git_blob_sha(new_text.encode())}]
        command = f"git add config/settings.ini {new_file} && git commit -q -m '{message}'"
        hint = "Hint: `git status` shows the pending work; `git add` both files, then `git commit -m`."
        steps, distractors, commands = 2, 0, ["git status", "git add", "git commit"]
    elif difficulty == 2:
        token = f"flag_{module}_{rng.randint(100, 999)}"
        decoys = [f"{token[:-1]}{(int(token[-1]) + k) % 10}" for k in (1, 2)]
        setup += heredoc("src/flags.txt", f"{decoys[0]} = off\n") + _commit(10, "add flags")
        setup += heredoc("src/flags.txt", f"{decoys[0]} = off\n{token} = on\n") + _commit(11, "enable new flag")
        probes["introduced"] = {"git": ["log", "--no-textconv", f"-S{token}", "--format=%H", "--reverse", "HEAD"]}
        setup += heredoc("src/flags.txt", f"{decoys[0]} = off\n{token} = on\n{decoys[1]} = on\n") + _commit(12, "more flags")
        setup += heredoc("src/flags.txt", f"{decoys[0]} = on\n{token} = on\n{decoys[1]} = on\n") + _commit(13, "flip flags")
        request = (f"In the git repository in the workspace, find the commit that first introduced the string `{token}` "
                   "(into any file). Write its full 40-character hash, and nothing else, to `answer.txt` (outside of "
                   "any commit: do not commit it).")
        checks = [{"op": "file", "path": "answer.txt", "probe": "introduced"}]
        command = f"git log -S{token} --format=%H --reverse | head -1 > answer.txt"
        hint = f"Hint: `git log -S{token}` (the pickaxe) lists the commits that added or removed it."
        steps, distractors, commands = 1, 2, ["git log -S", "head"]
    else:
        main_timeout, feature_timeout = rng.sample(range(60, 99), 2)
        setup += "git checkout -q -b feature\n"
        feature_file = f"src/{other}-feature.txt"
        feature_text = lines(rng, 2)
        feature_cfg = base.replace(base.split("timeout = ")[1], f"{feature_timeout}\n")
        setup += heredoc("config/settings.ini", feature_cfg) + heredoc(feature_file, feature_text) + _commit(20, "feature: longer timeout")
        setup += "git checkout -q main\n"
        main_cfg = base.replace(base.split("timeout = ")[1], f"{main_timeout}\n")
        setup += heredoc("config/settings.ini", main_cfg) + _commit(21, "main: tune timeout")
        probes |= {"main": {"git": ["rev-parse", "main"]}, "feature": {"git": ["rev-parse", "feature"]}}
        request = ("In the git repository in the workspace, merge the branch `feature` into `main` (a merge commit on "
                   "main with both as parents). Both changed the `timeout` line of `config/settings.ini`: resolve the "
                   f"conflict by keeping the feature branch's value ({feature_timeout}) and nothing else of the conflict "
                   "markers. Commit the merge.")
        checks = [{"op": "git", "name": "on main", "args": ["rev-parse", "--abbrev-ref", "HEAD"], "text": "main"},
                  {"op": "git", "name": "merge parents", "args": ["log", "-1", "--format=%P", "HEAD"], "probe": ["main", "feature"]},
                  {"op": "git", "name": "resolved config", "args": ["rev-parse", "HEAD:config/settings.ini"], "text": git_blob_sha(feature_cfg.encode())},
                  {"op": "git", "name": "feature file", "args": ["rev-parse", f"HEAD:{feature_file}"], "text": git_blob_sha(feature_text.encode())},
                  {"op": "file", "path": "config/settings.ini", "text": feature_cfg}]
        command = "git merge feature >/dev/null; git checkout --theirs config/settings.ini && git add config/settings.ini && git commit -q --no-edit"
        hint = "Hint: `git merge feature`, then `git checkout --theirs config/settings.ini`, `git add` and `git commit`."
        steps, distractors, commands = 3, 1, ["git merge", "git checkout --theirs", "git add", "git commit"]
    return Draft("git", {}, setup, request, hint, checks, [shell(command)],
                 {"files": history + 1, "steps": steps, "distractors": distractors, "commands": commands}, probes=probes)


MAIN_C = """#include <stdio.h>
#include <stdlib.h>
#include "mix.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: app N\\n");
        return 2;
    }
    long n = strtol(argv[1], NULL, 10);
    printf("mix(%ld) = %ld\\n", n, mix(n));
    return 0;
}
"""


def _makefile(sources: str, flags: str, include: str, target: str) -> str:
    return (f"CC = gcc\nCFLAGS = {flags} -I{include}\nSRCS = {sources}\n\n.PHONY: all clean\n\nall: build/app\n\n"
            f"{target}: $(SRCS)\n\tmkdir -p build\n\t$(CC) $(CFLAGS) -o build/app $(SRCS)\n\nclean:\n\trm -rf build\n")


def build_template(rng: random.Random, difficulty: int) -> Draft:
    """A C program whose Makefile is broken: a wrong source path, a typo'd compiler flag, a
    misnamed target or include folder; d1 one error, d2 two, d3 three plus a stale source file in
    src/ that must not be built (a `src/*.c` wildcard links a duplicate symbol)."""
    a, b, m = rng.randint(3, 97), rng.randint(1, 999), rng.choice((1009, 2003, 4001, 7919))
    mix_c = f'#include "mix.h"\n\nlong mix(long n) {{\n    return (n * {a} + {b}) % {m};\n}}\n'
    files = {"src/main.c": MAIN_C, "src/mix.c": mix_c, "include/mix.h": "long mix(long n);\n"}
    defaults = {"sources": "src/main.c src/mix.c", "flags": "-O2 -Wall", "include": "include", "target": "build/app"}
    errors = {"path": ("sources", "src/main.c src/mixer.c"), "flag": ("flags", "-O2 -Wal"),
              "target": ("target", "build/ap"), "include": ("include", "includes")}
    good = _makefile(**defaults)
    broken = dict(defaults)
    for name in rng.sample(sorted(errors), difficulty):
        field, value = errors[name]
        broken[field] = value
    files["Makefile"] = _makefile(**broken)
    if difficulty == 3:
        files["src/mix_old.c"] = f'long mix(long n) {{\n    return n % {m};\n}}\n'
    probes_n = [rng.randint(1000, 99999) for _ in range(2)]
    expected = "".join(f"mix({n}) = {(n * a + b) % m}\n" for n in probes_n)
    script = ("rm -rf build && make >/dev/null 2>&1 || { echo BUILD_FAILED; exit 1; }\n"
              + "".join(f"./build/app {n}\n" for n in probes_n))
    sources = {p: t for p, t in files.items() if p != "Makefile"}
    request = ("`make` fails in the workspace: the C program (sources in `src/`, headers in `include/`) does not build. "
               "Fix the build so that `make` from the workspace root builds `build/app`, without changing the C sources "
               "or headers.")
    hint = "Hint: run `make` and read the first error; the `Makefile` (SRCS, CFLAGS, the rule's target name) is where it breaks."
    checks = [{"op": "run", "name": "builds and runs", "script": script, "stdout": expected}]
    return Draft("build", files, "", request, hint, checks,
                 [("write_file", {"path": "Makefile", "content": good}), shell("make")],
                 {"files": len(files), "steps": difficulty, "distractors": int(difficulty == 3),
                  "commands": ["make", "gcc"]}, overrides=sources)


SERVICE_PY = '''"""A tiny status service: reads an INI config, serves GET /health on 127.0.0.1."""
import argparse
import configparser
import http.server
import os
import sys

LEVELS = ("debug", "info", "warning", "error")


def fail(message):
    print(f"config error: {message}", file=sys.stderr)
    sys.exit(2)


def load(path):
    config = configparser.ConfigParser()
    if not config.read(path):
        fail(f"cannot read {path}")
    if "server" not in config:
        fail("missing [server] section")
    server = config["server"]
    if "port" not in server:
        fail("missing key port in [server]")
    try:
        port = int(server["port"])
    except ValueError:
        fail(f"port must be a number, got {server['port']!r}")
    data_dir = os.path.join(os.path.dirname(os.path.abspath(path)), server.get("data_dir", ""))
    if not os.path.isfile(os.path.join(data_dir, "motd.txt")):
        fail(f"data_dir {server.get('data_dir')!r} has no motd.txt")
    try:
        workers = int(server.get("workers", "1"))
    except ValueError:
        fail(f"workers must be a whole number, got {server.get('workers')!r}")
    if not 1 <= workers <= 8:
        fail(f"workers must be between 1 and 8, got {workers}")
    level = config.get("logging", "level", fallback="info")
    if level not in LEVELS:
        fail(f"logging level must be one of {LEVELS}, got {level!r}")
    with open(os.path.join(data_dir, "motd.txt"), encoding="utf-8") as fh:
        motd = fh.readline().strip()
    return port, server.get("name", "service"), motd


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    port, name, motd = load(parser.parse_args().config)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"ok {name} {motd}".encode() if self.path == "/health" else b"not found"
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
'''

SERVICE_CHECK = """python3 -I service/app.py --config service/config.ini >/dev/null 2>service.err &
pid=$!
python3 -I - "$pid" <<'EOF'
import sys, time, urllib.request

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

for _ in range(50):
    try:
        print(urllib.request.urlopen("http://127.0.0.1:{port}/health", timeout=2).read().decode())
        break
    except OSError:
        if not alive(sys.argv[1]):
            print("SERVICE_EXITED")
            break
        time.sleep(0.2)
else:
    print("NO_ANSWER")
EOF
kill $pid 2>/dev/null
"""


def service_template(rng: random.Random, difficulty: int) -> Draft:
    """A local Python service whose INI config is wrong. d1: a misspelled port key; d2: and a
    data_dir pointing at a folder that does not exist (an old copy with a stale message sits next
    to the right one); d3: and invalid values (workers spelled out, an unknown log level)."""
    name, word = rng.sample(WORDS, 2)
    port = rng.randint(8100, 8999)
    motd = f"welcome to {name}, today is {word} day"
    workers = rng.randint(2, 6)
    files = {"service/app.py": SERVICE_PY, "srv/data/motd.txt": motd + "\n"}
    good_key, good_dir, good_workers, good_level = "port", "../srv/data", str(workers), "info"
    key, data_dir, workers_text, level = "prot", good_dir, good_workers, good_level
    distractors = 0
    if difficulty >= 2:
        data_dir = "../srv/dat"
        files["srv/data.old/motd.txt"] = f"welcome to {name} (old message)\n"
        distractors = 1
    if difficulty == 3:
        workers_text = ("one two three four five six".split())[workers - 1]
        level = "verbose"
        distractors = 2
    config = (f"[server]\nname = {name}\n{key} = {port}\ndata_dir = {data_dir}\nworkers = {workers_text}\n\n"
              f"[logging]\nlevel = {level}\n")
    fixed = (f"[server]\nname = {name}\n{good_key} = {port}\ndata_dir = {good_dir}\nworkers = {good_workers}\n\n"
             f"[logging]\nlevel = {good_level}\n")
    files["service/config.ini"] = config
    request = (f"The service in `service/` must start with `python3 service/app.py --config service/config.ini` and "
               f"answer `GET /health` on 127.0.0.1 port {port}, serving the current message of the day from `srv/data/`, "
               "but it does not start. Fix its configuration (not the code) so that it does.")
    if difficulty == 3:
        request += f" It should run {workers} workers and log at the usual `info` level."
    hint = "Hint: run the start command and read its `config error:` line; `service/app.py`'s `load()` lists every key it expects."
    checks = [{"op": "run", "name": "service answers", "script": SERVICE_CHECK.replace("{port}", str(port)),
               "stdout": f"ok {name} {motd}"}]
    return Draft("service", files, "", request, hint, checks,
                 [("write_file", {"path": "service/config.ini", "content": fixed})],
                 {"files": len(files), "steps": difficulty, "distractors": distractors, "commands": ["python3", "curl"]},
                 overrides={"service/app.py": SERVICE_PY})
