"""Terminal templates about files and data: moving files, text processing, running a job,
permissions and archives. Each is `template(rng, difficulty) -> Draft` (draft.py); difficulty
adds files, steps and distractors as the module docstrings of each function say."""

from __future__ import annotations

import random

from forgerl.envs.terminal.draft import WORDS, Draft, lines, sha, shell

TAGS = ("alpha", "bravo", "delta", "kilo", "oscar", "sierra", "tango", "zulu")
SUBDIRS = ("north", "south", "east", "west", "misc")


def files_template(rng: random.Random, difficulty: int) -> Draft:
    """Move every `<tag>-*.log` out of inbox/ into archive/<tag>/. d2: nested folders and
    look-alike distractors (.log.bak, other tags); d3: also prefix each name with its folder."""
    tag, *others = rng.sample(TAGS, 3)
    nested = difficulty >= 2
    files: dict[str, str] = {}
    moved: dict[str, str] = {}  # source -> destination
    names = rng.sample(WORDS, 4 + difficulty * 2)
    for i in range(2 + difficulty):
        folder = f"inbox/{rng.choice(SUBDIRS)}" if nested else "inbox"
        src = f"{folder}/{tag}-{names[i]}.log"
        prefix = f"{folder.split('/')[-1]}-" if difficulty == 3 else ""
        moved[src] = f"archive/{tag}/{prefix}{tag}-{names[i]}.log"
        files[src] = lines(rng, rng.randint(2, 5))
    distractors = [f"inbox/{others[0]}-{names[-1]}.log", f"inbox/{tag}-{names[-2]}.txt"]
    if nested:
        distractors += [f"inbox/{rng.choice(SUBDIRS)}/{tag}-{names[-3]}.log.bak", f"inbox/{rng.choice(SUBDIRS)}/{others[1]}-{names[-4]}.log"]
    for path in distractors:
        files[path] = lines(rng, 2)
    checks = [{"op": "tree", "dir": f"archive/{tag}", "files": sorted(d.split("/", 2)[2] for d in moved.values())}]
    checks += [{"op": "sha256", "path": dst, "sha256": sha(files[src])} for src, dst in moved.items()]
    checks += [{"op": "absent", "path": src} for src in moved]
    checks += [{"op": "sha256", "path": path, "sha256": sha(files[path])} for path in distractors]
    where = "anywhere under inbox/ (it has subfolders)" if nested else "in inbox/"
    request = (f"Move every log file of the {tag!r} team, i.e. every file named `{tag}-*.log` {where}, into "
               f"`archive/{tag}/`. Leave every other file where it is.")
    if difficulty == 3:
        request += (" While moving, prefix each file's name with the name of the folder it came from and a dash "
                    f"(inbox/north/{tag}-x.log becomes archive/{tag}/north-{tag}-x.log).")
    if difficulty == 3:
        command = (f"mkdir -p archive/{tag} && find inbox -type f -name '{tag}-*.log' | while read -r f; do "
                   f"mv \"$f\" \"archive/{tag}/$(basename \"$(dirname \"$f\")\")-$(basename \"$f\")\"; done")
    else:
        command = f"mkdir -p archive/{tag} && find inbox -type f -name '{tag}-*.log' -exec mv {{}} archive/{tag}/ \\;"
    hint = f"Hint: `find inbox -type f -name '{tag}-*.log'` lists exactly the files to move; `mkdir -p` and `mv` do the rest."
    return Draft("files", files, "", request, hint, checks, [shell(command)],
                 {"files": len(files), "steps": 1 + (difficulty == 3), "distractors": len(distractors),
                  "commands": ["find", "mkdir", "mv"] + (["basename"] if difficulty == 3 else [])})


METHODS = ("GET", "POST", "PUT", "DELETE")
PATHS = ("/api/users", "/api/orders", "/api/items", "/static/app.js", "/index.html", "/login", "/api/search")
STATUSES = (200, 200, 200, 201, 204, 301, 404, 500, 502, 503)


def _log_lines(rng: random.Random, n: int, ips: list[str]) -> list[tuple[str, ...]]:
    rows = []
    for _ in range(n):
        when = f"2024-03-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        rows.append((*when.split(), rng.choice(ips), rng.choice(METHODS), rng.choice(PATHS),
                     str(rng.choice(STATUSES)), str(rng.randint(100, 9000))))
    return rows


def text_template(rng: random.Random, difficulty: int) -> Draft:
    """Aggregate an access log (date time ip method path status bytes). d1: count 5xx answers;
    d2: top 3 clients on /api/ paths; d3: bytes per method over several logs, one gzipped, with
    comment and truncated lines to skip."""
    ips = [f"10.0.{rng.randint(0, 9)}.{rng.randint(1, 254)}" for _ in range(6)]
    ips = sorted(set(ips))
    count = 60 + 40 * difficulty
    rows = _log_lines(rng, count, ips)
    files: dict[str, str] = {}
    setup = ""
    if difficulty == 1:
        files["logs/access.log"] = "".join(" ".join(r) + "\n" for r in rows)
        answer = str(sum(r[5].startswith("5") for r in rows))
        request = ("How many requests in `logs/access.log` were answered with a server error (any 5xx status; the "
                   "status is the 6th field)? Write just the number to `answer.txt`.")
        command = "awk '$6 ~ /^5/' logs/access.log | wc -l > answer.txt"
        hint = "Hint: `awk '$6 ~ /^5/' logs/access.log | wc -l` counts them."
        target, steps, distractors, commands = "answer.txt", 1, 0, ["awk", "wc"]
    elif difficulty == 2:
        files["logs/access.log"] = "".join(" ".join(r) + "\n" for r in rows)
        counts: dict[str, int] = {}
        for r in rows:
            if r[4].startswith("/api/"):
                counts[r[2]] = counts.get(r[2], 0) + 1
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        answer = "".join(f"{n} {ip}\n" for ip, n in top)
        request = ("Which 3 client IPs (3rd field) sent the most requests to paths under `/api/` (5th field) in "
                   "`logs/access.log`? Write `report.txt` with one line per client, `COUNT IP`, most requests first "
                   "(ties: IP in ascending text order).")
        command = ("awk '$5 ~ /^\\/api\\//' logs/access.log | awk '{print $3}' | sort | uniq -c | "
                   "sort -k1,1nr -k2,2 | head -3 | awk '{print $1, $2}' > report.txt")
        hint = "Hint: `awk`, then `sort | uniq -c | sort -k1,1nr -k2,2 | head -3` gives the ranking."
        target, steps, distractors, commands = "report.txt", 2, 0, ["awk", "sort", "uniq", "head"]
    else:
        parts = [rows[: count // 3], rows[count // 3: 2 * count // 3], rows[2 * count // 3:]]
        totals: dict[str, int] = {}
        for r in rows:
            if r[5] == "200":
                totals[r[3]] = totals.get(r[3], 0) + int(r[6])
        for i, part in enumerate(parts, start=1):
            text = [" ".join(r) + "\n" for r in part]
            text.insert(rng.randint(0, len(text)), "# logrotate: file reopened\n")
            text.insert(rng.randint(0, len(text)), " ".join(rng.choice(part)[:6]) + "\n")  # a truncated line
            files[f"logs/access-{i}.log"] = "".join(text)
        setup = "gzip -n logs/access-3.log\n"
        answer = "".join(f"{m} {t}\n" for m, t in sorted(totals.items()))
        request = ("The access logs in `logs/` (one of them gzipped) have lines `date time ip method path status bytes`, "
                   "plus some comment and truncated lines that must be ignored. Write `report.txt` with the total bytes "
                   "of the requests answered with status 200, per HTTP method: one line `METHOD TOTAL` per method, "
                   "sorted by method name.")
        command = ("(cat logs/*.log; zcat logs/*.gz) | awk 'NF==7 && $6==200 {s[$4]+=$7} END {for (m in s) print m, s[m]}' "
                   "| sort > report.txt")
        hint = "Hint: `zcat` reads the .gz log; `awk 'NF==7 && $6==200 {s[$4]+=$7} END {...}'` sums per method."
        target, steps, distractors, commands = "report.txt", 3, 2, ["zcat", "cat", "awk", "sort"]
    checks = [{"op": "file", "path": target, "text": answer}]
    return Draft("text", files, setup, request, hint, checks, [shell(command)],
                 {"files": len(files), "steps": steps, "distractors": distractors, "commands": commands})


JOB_SCRIPT = r"""#!/bin/bash
# Prints the order lines of one region: NAME QTY*PRICE per item (by name), then the total.
set -u
region=""
while [ $# -gt 0 ]; do
  case "$1" in
    --region) region="$2"; shift 2 ;;
    *) echo "job: unknown argument $1" >&2; exit 64 ;;
  esac
done
[ -n "$region" ] || { echo "job: --region is required" >&2; exit 64; }
lock=run/job.lock
if [ -e "$lock" ]; then
  echo "job: another run holds $lock (pid $(cat "$lock")); not starting" >&2
  exit 75
fi
mkdir -p run && echo $$ > "$lock"
echo "job: reading data/orders.csv" >&2
awk -F, -v r="$region" '$1 == r {print $2, $3 * $4}' data/orders.csv | LC_ALL=C sort
awk -F, -v r="$region" '$1 == r {t += $3 * $4} END {print "total", t + 0}' data/orders.csv
rm -f "$lock"
missing=$(awk -F, -v r="$region" '$1 == r && $4 == 0' data/orders.csv | wc -l)
[ "$missing" -eq 0 ] || { echo "job: $missing items without a price" >&2; exit 3; }
exit 0
"""
REGIONS = ("emea", "apac", "amer", "nordics", "latam")


def processes_template(rng: random.Random, difficulty: int) -> Draft:
    """Run a job and capture its output. d1: stdout to a file; d2: and its exit status (the job
    warns on stderr and exits non-zero); d3: a stale lock from a dead run must be cleared first,
    and none may be left."""
    region, *others = rng.sample(REGIONS, 3)
    items = rng.sample(WORDS, 10)
    rows = []
    for i, name in enumerate(items):
        owner = region if i % 2 == 0 else rng.choice(others)
        price = 0 if (difficulty >= 2 and i == 2) else rng.randint(2, 40)
        rows.append((owner, name, rng.randint(1, 9), price))
    mine = sorted((r for r in rows if r[0] == region), key=lambda r: r[1])
    stdout = "".join(f"{r[1]} {r[2] * r[3]}\n" for r in mine) + f"total {sum(r[2] * r[3] for r in mine)}\n"
    status = "3" if any(r[3] == 0 for r in mine) else "0"
    files = {"bin/job.sh": JOB_SCRIPT, "data/orders.csv": "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows)}
    setup = "chmod 755 bin/job.sh\n"
    request = (f"Run the job `bin/job.sh --region {region}` from the workspace root and save its standard output "
               "(only stdout, not the messages it prints on stderr) to `out/job.out`.")
    command = f"mkdir -p out && bin/job.sh --region {region} > out/job.out"
    checks = [{"op": "file", "path": "out/job.out", "text": stdout}]
    steps, distractors = 1, 0
    if difficulty >= 2:
        request += " Also write its exit status (just the number) to `out/job.status`."
        command += "; echo $? > out/job.status"
        checks.append({"op": "file", "path": "out/job.status", "text": status})
        steps, distractors = 2, 1
    if difficulty == 3:
        dead = rng.randint(30_000, 60_000)
        setup += f"mkdir -p run && echo {dead} > run/job.lock\n"
        request += (" A previous run crashed and may have left its lock behind; no process of it is running any "
                    "more. When you are done, no lock file may remain.")
        command = "rm -f run/job.lock && " + command
        checks.append({"op": "absent", "path": "run/job.lock"})
        steps, distractors = 3, 2
    hint = ("Hint: redirect with `> out/job.out` (stderr stays on the terminal) and read `$?` right after the job; "
            "`bin/job.sh` refuses to start while `run/job.lock` exists.")
    return Draft("processes", files, setup, request, hint, checks, [shell(command)],
                 {"files": len(files), "steps": steps, "distractors": distractors,
                  "commands": ["bash", "mkdir"] + (["echo"] if difficulty >= 2 else []) + (["rm"] if difficulty == 3 else [])})


def permissions_template(rng: random.Random, difficulty: int) -> Draft:
    """Fix file modes. d1: a deploy script must be runnable (755); d2: and a private key 600 in a
    700 folder (its .pub stays 644); d3: and a shared report tree 640/750 with a README left 644."""
    user = rng.choice(WORDS)
    script = f"#!/bin/sh\necho deploying {rng.choice(WORDS)} as {user}\n"
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "".join(
        "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(64)) + "\n"
        for _ in range(4)) + "-----END OPENSSH PRIVATE KEY-----\n"
    files = {"bin/deploy.sh": script, f"keys/id_{user}": key, f"keys/id_{user}.pub": f"ssh-ed25519 AAAA{rng.randint(10**8, 10**9)} {user}\n"}
    setup = f"chmod 644 bin/deploy.sh keys/id_{user} keys/id_{user}.pub\nchmod 755 keys\n"
    checks: list[dict] = [{"op": "mode", "path": "bin/deploy.sh", "mode": "755"}]
    request = "Make `bin/deploy.sh` executable: mode rwxr-xr-x (owner may change it, everyone may run it)."
    commands = ["chmod 755 bin/deploy.sh"]
    distractors = 0
    if difficulty >= 2:
        request += (f" The SSH private key `keys/id_{user}` must be readable and writable by its owner only, and the "
                    "`keys` folder accessible by its owner only; the public key keeps its current mode.")
        checks += [{"op": "mode", "path": f"keys/id_{user}", "mode": "600"}, {"op": "mode", "path": "keys", "mode": "700"},
                   {"op": "mode", "path": f"keys/id_{user}.pub", "mode": "644"}]
        commands += [f"chmod 600 keys/id_{user}", "chmod 700 keys"]
        distractors = 1
    if difficulty == 3:
        reports = [f"shared/reports/{rng.choice(SUBDIRS)}/{w}.csv" for w in rng.sample(WORDS, 5)]
        for path in reports:
            files[path] = lines(rng, 2)
        files["shared/README"] = "Shared reports; see reports/.\n"
        setup += "chmod -R 777 shared/reports\nchmod 644 shared/README\n"
        folders = sorted({"shared/reports", *(p.rsplit("/", 1)[0] for p in reports)})
        request += (" Everything under `shared/reports/` must be group-readable but private otherwise: files rw-r----- "
                    "and folders rwxr-x---. `shared/README` stays as it is.")
        checks += [{"op": "mode", "path": p, "mode": "640"} for p in reports]
        checks += [{"op": "mode", "path": d, "mode": "750"} for d in folders]
        checks.append({"op": "mode", "path": "shared/README", "mode": "644"})
        commands += ["find shared/reports -type d -exec chmod 750 {} +", "find shared/reports -type f -exec chmod 640 {} +"]
        distractors = 2
    checks += [{"op": "sha256", "path": p, "sha256": sha(t)} for p, t in sorted(files.items())]
    hint = "Hint: `chmod` takes octal modes (755 = rwxr-xr-x, 600 = rw-------); `find ... -type f -exec chmod` walks a tree."
    return Draft("permissions", files, setup, request, hint, checks, [shell(" && ".join(commands))],
                 {"files": len(files), "steps": len(commands), "distractors": distractors,
                  "commands": ["chmod"] + (["find"] if difficulty == 3 else [])})


def archives_template(rng: random.Random, difficulty: int) -> Draft:
    """Archives. d1: extract a .tar.gz; d2: build a .tar.gz with exactly the app's files (no
    *.tmp, no __pycache__); d3: a zip holding a tar.gz: pull one team's logs out and zip them."""
    name = rng.choice(WORDS)
    files: dict[str, str] = {}
    if difficulty == 1:
        members = {f"report/{w}.txt": lines(rng, 3) for w in rng.sample(WORDS, 4)}
        files.update({f".stage/{p}": t for p, t in members.items()})
        setup = "mkdir -p incoming && tar czf incoming/data.tar.gz -C .stage report && rm -rf .stage\n"
        request = "Extract `incoming/data.tar.gz` into a new folder `extracted/` (so that `extracted/report/...` exists)."
        checks = [{"op": "tree", "dir": "extracted", "files": sorted(members)}]
        checks += [{"op": "sha256", "path": f"extracted/{p}", "sha256": sha(t)} for p, t in members.items()]
        command = "mkdir -p extracted && tar xzf incoming/data.tar.gz -C extracted"
        hint = "Hint: `tar xzf ARCHIVE -C DIR` extracts into DIR."
        steps, distractors, commands = 1, 0, ["tar", "mkdir"]
    elif difficulty == 2:
        keep = {f"app/{w}.py": lines(rng, 3) for w in rng.sample(WORDS, 3)}
        keep[f"app/conf/{name}.ini"] = f"[{name}]\nlevel = {rng.randint(1, 9)}\n"
        junk = {f"app/{rng.choice(WORDS)}.tmp": "scratch\n", "app/__pycache__/main.cpython-311.pyc": "not really bytecode\n"}
        files.update(keep | junk)
        setup = ""
        request = ("Build `dist/release.tar.gz`, a gzipped tar archive holding exactly the files under `app/` (member "
                   "names starting with `app/`), leaving out `*.tmp` files and `__pycache__` folders.")
        checks = [{"op": "archive", "path": "dist/release.tar.gz", "format": "tar",
                   "members": {p: sha(t) for p, t in keep.items()}}]
        command = "mkdir -p dist && tar czf dist/release.tar.gz --exclude='*.tmp' --exclude=__pycache__ app"
        hint = "Hint: `tar czf OUT --exclude='*.tmp' --exclude=__pycache__ app` builds it."
        steps, distractors, commands = 1, 2, ["tar", "mkdir"]
    else:
        team, other = rng.sample(TAGS, 2)
        wanted = {f"{team}-{w}.log": lines(rng, 2) for w in rng.sample(WORDS, 3)}
        rest = {f"{other}-{w}.log": lines(rng, 2) for w in rng.sample(WORDS, 2)} | {f"{team}-notes.txt": "notes\n"}
        files.update({f".stage/logs/{p}": t for p, t in (wanted | rest).items()})
        setup = ("cd .stage && tar czf logs.tar.gz logs && zip -q -X ../bundle.zip logs.tar.gz && cd .. && "
                 "mkdir -p incoming && mv bundle.zip incoming/ && rm -rf .stage\n")
        request = (f"`incoming/bundle.zip` contains a tar.gz of logs. Put the `{team}-*.log` files from it into a new "
                   f"folder `restored/` (flat, no other files there), and create `dist/{team}.zip` holding exactly "
                   "those files at the top level of the zip (no folder in the member names).")
        checks = [{"op": "tree", "dir": "restored", "files": sorted(wanted)}]
        checks += [{"op": "sha256", "path": f"restored/{p}", "sha256": sha(t)} for p, t in wanted.items()]
        checks.append({"op": "archive", "path": f"dist/{team}.zip", "format": "zip",
                       "members": {p: sha(t) for p, t in wanted.items()}})
        command = (f"mkdir -p /tmp/b restored dist && unzip -q -o incoming/bundle.zip -d /tmp/b && tar xzf /tmp/b/logs.tar.gz "
                   f"-C /tmp/b && cp /tmp/b/logs/{team}-*.log restored/ && cd restored && zip -q ../dist/{team}.zip {team}-*.log")
        hint = "Hint: `unzip -d`, then `tar xzf`, then `cp`; `zip` run inside restored/ keeps folder names out."
        steps, distractors, commands = 3, len(rest), ["unzip", "tar", "cp", "zip", "mkdir"]
    return Draft("archives", files, setup, request, hint, checks, [shell(command)],
                 {"files": len(files), "steps": steps, "distractors": distractors, "commands": commands})

