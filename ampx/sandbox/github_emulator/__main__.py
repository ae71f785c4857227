"""Run the GitHub emulator as a process: ``python -m ampx.sandbox.github_emulator``.

Example::

    python -m ampx.sandbox.github_emulator --root /tmp/gh --port 8765 \\
        --repo acme/api --seed ./demo-repo \\
        --app-id 1 --app-private-key-out /tmp/gh/app.pem \\
        --token-file /tmp/gh/token

prints the URLs (or one JSON object with ``--json``) and serves until killed.
Secrets are only ever written to the files named on the command line (mode
0600), never printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from .auth import new_token
from .emulator import GitHubEmulator


def _write_secret(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)


def _parse_repo(value: str, default_seed: Path | None) -> tuple[str, Path | None]:
    name, _, seed = value.partition("=")
    return name, Path(seed) if seed else default_seed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ampx.sandbox.github_emulator", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, help="state directory (default: a new temporary directory)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--repo", action="append", default=[], metavar="OWNER/NAME[=SEED_DIR]", help="create a repository (repeatable)")
    p.add_argument("--seed", type=Path, help="directory committed as the first commit of repos without their own =SEED_DIR")
    p.add_argument("--default-branch", default="main")
    p.add_argument("--app-id", type=int, help="register a GitHub App with this id and install it on every --repo")
    p.add_argument("--app-public-key", type=Path, help="PEM public key of the app (otherwise a key pair is generated)")
    p.add_argument("--app-private-key-out", type=Path, help="where to write the generated app private key (0600)")
    p.add_argument("--token-file", type=Path, help="personal token file: read if it exists, else generated and written (0600)")
    p.add_argument("--token-login", default="octocat", help="user owning the personal token")
    p.add_argument("--token-ttl", type=float, default=3600, help="installation token lifetime, seconds")
    p.add_argument("--rate-limit", type=int, default=5000)
    p.add_argument("--ci-concurrency", type=int, default=2)
    p.add_argument("--step-timeout", type=float, default=600)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--ready-file", type=Path, help="also write the JSON description here once serving")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    root = args.root or Path(tempfile.mkdtemp(prefix="ampx-github-"))
    emu = GitHubEmulator(
        root,
        host=args.host,
        port=args.port,
        token_ttl=args.token_ttl,
        rate_limit=args.rate_limit,
        ci_concurrency=args.ci_concurrency,
        step_timeout=args.step_timeout,
    )
    emu.start()
    info: dict = {"url": emu.url, "api_url": emu.api_url, "root": str(root), "pid": os.getpid(), "repos": {}}
    try:
        for spec in args.repo:
            name, seed = _parse_repo(spec, args.seed)
            emu.create_repo(name, seed, default_branch=args.default_branch)
            info["repos"][name] = {"clone_url": emu.clone_url(name), "html_url": f"{emu.url}/{name}"}
        if args.app_id is not None:
            if args.app_public_key:
                emu.register_app(args.app_id, args.app_public_key.read_text())
            else:
                creds = emu.create_app(args.app_id)
                if args.app_private_key_out:
                    _write_secret(args.app_private_key_out, creds.private_key_pem)
                    info["app_private_key_file"] = str(args.app_private_key_out)
            info["app_id"] = args.app_id
            info["installations"] = {name: emu.install_app(args.app_id, name) for name in info["repos"]}
        if args.token_file:
            if args.token_file.exists():
                token = args.token_file.read_text().strip()
            else:
                token = new_token("ghp_")
                _write_secret(args.token_file, token + "\n")
            emu.add_personal_token(token, login=args.token_login)
            info["token_file"] = str(args.token_file)
    except Exception:
        emu.stop()
        raise

    if args.ready_file:
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(args.ready_file)
    if args.json:
        print(json.dumps(info), flush=True)
    else:
        print(f"GitHub emulator (stand-in, not GitHub) serving on {emu.url}", flush=True)
        print(f"  REST API (PyGithub base_url): {emu.api_url}")
        for name, repo in info["repos"].items():
            print(f"  {name}: git clone {repo['clone_url']}")
        if "installations" in info:
            print(f"  GitHub App {info['app_id']} installations: {info['installations']}")
        if "token_file" in info:
            print(f"  personal token in {info['token_file']}")
        print("Press Ctrl-C to stop.", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
