"""Minimal HTML pages behind the ``html_url`` links the API hands out.

Only so that a person following a link printed by ``ampx demo`` sees the pull
request, the run or the job log instead of a 404. The pages are unauthenticated
(the emulator binds to localhost) and deliberately plain. ``.diff``/``.patch``
URLs of pull requests return real git output, like GitHub's.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

from . import gitrepo

if TYPE_CHECKING:
    from .emulator import GitHubEmulator

ROUTES = [
    ("pull", re.compile(r"^/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pull/(?P<n>\d+)(?P<ext>\.diff|\.patch)?$")),
    ("job", re.compile(r"^/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/runs/(?P<run>\d+)/job/(?P<job>\d+)$")),
    ("run", re.compile(r"^/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/runs/(?P<run>\d+)$")),
    ("repo", re.compile(r"^/(?P<owner>[^/]+)/(?P<repo>[^/.]+)/?$")),
]


def _page(title: str, body: str) -> tuple[int, str, bytes]:
    doc = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}pre{background:#f6f8fa;padding:1em;overflow:auto}"
        ".success{color:#1a7f37}.failure{color:#cf222e}</style></head><body>"
        "<p><small>GitHub emulator (a local stand-in for GitHub)</small></p>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return 200, "text/html; charset=utf-8", doc.encode()


def _badge(status: str, conclusion: str | None) -> str:
    text = conclusion or status
    return f"<span class='{html.escape(text)}'>{html.escape(text)}</span>"


def render(emu: "GitHubEmulator", path: str) -> tuple[int, str, bytes] | None:
    """(status, content type, body) for a web path, or None if it is not one."""
    for kind, pattern in ROUTES:
        m = pattern.match(path)
        if m:
            break
    else:
        return None
    with emu.store.lock:
        repo = emu.store.repo(f"{m.group('owner')}/{m.group('repo')}")
    if repo is None:
        return 404, "text/plain; charset=utf-8", b"Not Found"
    base = f"{emu.url}/{repo.full_name}"
    if kind == "repo":
        with emu.store.lock:
            pulls = sorted(emu.store.pulls.get(repo.full_name.lower(), {}).values(), key=lambda p: -p.number)
            runs = sorted((r for r in emu.store.runs.values() if r.repo is repo), key=lambda r: -r.id)[:20]
            branches = sorted(k[len("refs/heads/") :] for k in repo.refs if k.startswith("refs/heads/"))
        body = f"<p>git clone {html.escape(base)}.git</p><h2>Branches</h2><ul>"
        body += "".join(f"<li>{html.escape(b)}</li>" for b in branches) + "</ul><h2>Pull requests</h2><ul>"
        body += "".join(
            f"<li><a href='{base}/pull/{p.number}'>#{p.number} {html.escape(p.title)}</a> ({'merged' if p.merged_at else p.state})</li>"
            for p in pulls
        )
        body += "</ul><h2>Workflow runs</h2><ul>"
        body += "".join(
            f"<li><a href='{base}/actions/runs/{r.id}'>{html.escape(r.workflow.name)} #{r.run_number}</a> "
            f"{html.escape(r.head_branch or '')} {_badge(r.status, r.conclusion)}</li>"
            for r in runs
        )
        return _page(repo.full_name, body + "</ul>")
    if kind == "pull":
        with emu.store.lock:
            pr = emu.store.pulls.get(repo.full_name.lower(), {}).get(int(m.group("n")))
        if pr is None:
            return 404, "text/plain; charset=utf-8", b"Not Found"
        base_sha = repo.refs.get(f"refs/heads/{pr.base_ref}", pr.base_sha) if pr.state == "open" else pr.base_sha
        mb = gitrepo.merge_base(repo.git_dir, base_sha, pr.head_sha) or base_sha
        if m.group("ext") == ".patch":
            text = gitrepo.run_git(["format-patch", "--stdout", f"{mb}..{pr.head_sha}"], git_dir=repo.git_dir).stdout
            return 200, "text/plain; charset=utf-8", text
        diff = gitrepo.run_git(["diff", mb, pr.head_sha], git_dir=repo.git_dir).stdout
        if m.group("ext") == ".diff":
            return 200, "text/plain; charset=utf-8", diff
        state = "merged" if pr.merged_at else pr.state
        body = (
            f"<p>{html.escape(pr.head_ref)} &rarr; {html.escape(pr.base_ref)} &middot; {state} &middot; "
            f"head {pr.head_sha[:7]}</p><pre>{html.escape(pr.body or '')}</pre>"
            f"<pre>{html.escape(diff.decode(errors='replace'))}</pre>"
        )
        return _page(f"#{pr.number} {pr.title}", body)
    with emu.store.lock:
        run = emu.store.runs.get(int(m.group("run")))
        if run is None or run.repo is not repo:
            return 404, "text/plain; charset=utf-8", b"Not Found"
        if kind == "job":
            job = emu.store.jobs.get(int(m.group("job")))
            if job is None or job.run is not run:
                return 404, "text/plain; charset=utf-8", b"Not Found"
            text = job.log_text().lstrip("\ufeff")
            return _page(f"{job.name} ({run.workflow.name} #{run.run_number})", f"<p>{_badge(job.status, job.conclusion)}</p><pre>{html.escape(text)}</pre>")
        jobs = run.latest_jobs()
        body = f"<p>{html.escape(run.head_branch or '')} @ {run.head_sha[:7]} &middot; attempt {run.run_attempt} &middot; {_badge(run.status, run.conclusion)}</p><ul>"
        body += "".join(
            f"<li><a href='{base}/actions/runs/{run.id}/job/{j.id}'>{html.escape(j.name)}</a> {_badge(j.status, j.conclusion)}</li>"
            for j in jobs
        )
        return _page(f"{run.workflow.name} #{run.run_number}: {run.display_title}", body + "</ul>")
