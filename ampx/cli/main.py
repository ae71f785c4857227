"""`ampx`: kubectl-style commands over either runtime (a cluster, or the local supervisor)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import click

from ..core.ids import IdError
from ..kube.errors import KubeError
from . import output
from .backend import Backend, CliError, add_follow_up, now_iso, owner_name
from .config import ConfigError, branch_prefix, resolve_backend_name
from .visible import visible

if TYPE_CHECKING:  # pydantic and the models load only when a command needs them
    from ..core.models import AmpTask

OUTPUT_FORMATS = ["table", "wide", "json", "yaml", "name"]
PHASES = ["queued", "running", "retrying", "success", "needs_review", "aborted", "error"]
# `start -w`: how the task ended, as the exit status (0 only for success; see README)
WATCH_EXIT = {"success": 0, "needs_review": 4, "error": 5, "aborted": 6}


class Ctx:
    """Lazily built backend: `ampx --help` and completion must not need a cluster."""

    def __init__(self, backend: Optional[str], namespace: Optional[str], context: Optional[str],
                 all_namespaces: bool = False) -> None:
        self.backend_name = backend
        self.namespace = namespace
        self.context = context
        self.all_namespaces = all_namespaces
        self._backend: Optional[Backend] = None

    def backend(self, supervise: bool = True) -> Backend:
        if self._backend is None:
            name = resolve_backend_name(self.backend_name)
            if name == "kube":
                from .backend import KubeBackend

                self._backend = KubeBackend(self.namespace, self.context, self.all_namespaces)
            else:
                if self.namespace or self.context:
                    raise CliError("-n/--namespace and --context apply to the kube backend; the "
                                   "local runtime has no namespaces (use --backend kube)")
                from ..local.backend import LocalBackend

                self._backend = LocalBackend.from_env(ensure_supervisor=supervise)
        return self._backend


def _complete_ids(ctx: click.Context, param: click.Parameter, incomplete: str):
    """Shell completion of task ids (quietly nothing when the runtime is unreachable)."""
    try:
        root = ctx.find_root()
        c = Ctx(root.params.get("backend"), root.params.get("namespace"),
                root.params.get("context"))
        b = c.backend(supervise=False)  # completing must not start anything
        names = (d["metadata"]["name"] for d in b.list_docs(True, owner_name()))
        return [n for n in names if n.startswith(incomplete.lower())]
    except Exception:
        return []


def _common(f):
    f = click.option("-n", "--namespace", help="Namespace (default: the kubeconfig context's).")(f)
    f = click.option("--context", help="kubeconfig context to use.")(f)
    f = click.option("--backend", type=click.Choice(["local", "kube"]),
                     help="Runtime: local (default) or kube; also AMPX_BACKEND, `ampx config`.")(f)
    return f


def _ctx(kw: dict, all_namespaces: bool = False) -> Ctx:
    """The runtime flags, given after the subcommand or (kubectl-style) before it."""
    root = click.get_current_context().find_root().params

    def flag(name: str):
        value = kw.pop(name, None)
        return value if value is not None else root.get(name)

    return Ctx(flag("backend"), flag("namespace"), flag("context"), all_namespaces)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ampx")
@_common
def cli(**_flags) -> None:
    """Run coding-agent tasks in the background until CI is green."""


# ----------------------------------------------------------------------------- start
@cli.command()
@_common
@click.option("--repo", required=True, help="git@github.com:o/r.git, https://github.com/o/r or o/r.")
@click.option("--task", "task_text", help="What the agent should do.")
@click.option("--task-file", type=click.File("rb"), help="Read the task from a file ('-' = stdin).")
@click.option("--title", help="Short title (default: the task's first line).")
@click.option("--max-attempts", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--base", "base_branch", help="Base branch (default: the repository's default).")
@click.option("--branch", help="Task branch, under the task prefix (default: amp/<slug>-<id>).")
@click.option("--agent", default="amp", show_default=True, help="Agent profile: amp, claude or codex.")
@click.option("--timeout", "timeout_minutes", type=click.IntRange(1, 1440),
              help="Time limit of one attempt, in minutes (default 60).")
@click.option("--budget", "budget_minutes", type=click.IntRange(1, 10080),
              help="Wall-time budget of the whole run (attempts and CI waits), in minutes; "
                   "when spent the task stops at needs_review. Default: none.")
@click.option("--ci-trigger", type=click.Choice(["auto", "push", "pull_request"]),
              default="auto", show_default=True,
              help="Which runs to wait on: push to the task branch, a draft pull request's, "
                   "or auto (push when a workflow runs on push to the branch, else a draft PR).")
@click.option("-w", "--watch", is_flag=True,
              help="Follow the task until it finishes; the exit status says how it ended.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json", "yaml", "name"]),
              default="text")
def start(repo, task_text, task_file, title, max_attempts, base_branch, branch, agent,
          timeout_minutes, budget_minutes, ci_trigger, watch, fmt, **kw):
    """Start a task: an agent works on a branch until CI is green."""
    from pydantic import ValidationError

    from ..agent.profiles import BUILTIN_PROFILES
    from ..core.ids import default_branch, new_task_id
    from ..core.models import AmpTaskSpec, CiSpec, CiTrigger, Limits
    from .inputs import read_task_file, refuse_nul
    from .start_checks import start_problem

    if task_text and task_file:
        raise CliError("give --task or --task-file, not both")
    if task_file:
        task_text = read_task_file(task_file)
    if not task_text or not task_text.strip():
        raise CliError("the task is empty: give --task \"…\" or --task-file PATH")
    for what, value in (("--task", task_text), ("--title", title), ("--repo", repo),
                        ("--branch", branch), ("--base", base_branch)):
        refuse_nul(what, value)
    if agent not in BUILTIN_PROFILES:
        raise CliError(f"unknown --agent {visible(agent)!r}: use {', '.join(BUILTIN_PROFILES)} "
                       "(a custom command goes in AMPX_AGENT_COMMAND)")
    task_id = new_task_id()
    c = _ctx(kw)
    try:
        spec = AmpTaskSpec(repo=repo.strip(), prompt=task_text.strip(), title=title,
                           base_branch=base_branch, branch=branch, max_attempts=max_attempts,
                           agent=agent, ci=CiSpec(trigger=CiTrigger(ci_trigger)),
                           limits=Limits(attempt_timeout_minutes=timeout_minutes or 60,
                                         task_timeout_minutes=budget_minutes))
        if not spec.branch:
            spec = spec.model_copy(update={"branch": default_branch(
                spec.display_title(), task_id, branch_prefix())})
            AmpTaskSpec.model_validate(spec.model_dump())
    except ValidationError as exc:
        raise CliError(_validation_message(exc)) from None
    # branches and repositories: the runtime's own rules, refused here when the CLI can know
    if problem := start_problem(spec, resolve_backend_name(c.backend_name)):
        raise CliError(problem)
    backend = c.backend()
    _preflight(backend, agent)
    task = backend.create(task_id, spec, owner_name())
    _notices(backend)
    if fmt == "text":
        click.echo(f"Task {task.name} created on branch {visible(task.spec.branch)}")
    else:
        click.echo(output.dump([task], fmt, single=True))
    if watch:
        try:
            final = _follow(backend, task.name)
        except KeyboardInterrupt:
            click.echo(f"stopped watching; task {task.name} goes on "
                       f"(`ampx abort {task.name}` stops it)", err=True)
            sys.exit(130)
        sys.exit(WATCH_EXIT.get(final, 1))


def _preflight(backend: Backend, agent: Optional[str], needs_agent: bool = True) -> None:
    """Local runtime: the attempts run with this shell's credentials, so check them now, not in
    a log nobody reads. Missing what every attempt needs is an error (nothing is queued);
    anything that may stop attempts is a warning."""
    if backend.name != "local":
        return
    from ..local.credentials import preflight

    fatal, warnings = preflight(os.environ, agent or "amp", needs_agent)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    if fatal:
        raise CliError("no attempt could run on the local runtime: " + "; ".join(fatal)
                       + ". Nothing was queued; set it and run the command again")


def _notices(backend: Backend) -> None:
    for note in getattr(backend, "notices", []):
        click.echo(f"note: {note}", err=True)


_OPTION_OF = {"repo": "--repo", "prompt": "--task", "title": "--title", "branch": "--branch",
              "base_branch": "--base", "max_attempts": "--max-attempts", "agent": "--agent",
              "follow_ups": "-m", "message": "-m"}


def _validation_message(exc) -> str:
    """One line a person can act on, from pydantic's first error (never its raw dump)."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    where = next((_OPTION_OF[p] for p in reversed(loc) if p in _OPTION_OF), ".".join(loc))
    if not loc or loc == [""]:
        where = "--branch"  # the model's cross-field branch rules
    kind, ctx = err.get("type", ""), err.get("ctx") or {}
    msg = err["msg"].removeprefix("Value error, ")
    if loc and loc[0] == "repo":
        from ..core.repo import RepoError, parse_repo

        msg = "not a GitHub repository (use git@github.com:owner/repo.git, https://github.com/owner/repo or owner/repo)"
        try:
            parse_repo(str(err.get("input", "")))
        except RepoError as exc:  # the specific reason: a dot segment, a leading '-', …
            msg = str(exc)
    elif kind == "string_too_long":
        msg = f"too long: at most {ctx.get('max_length')} characters, got {len(str(err.get('input', '')))}"
    elif kind == "too_long":
        msg = f"too many: at most {ctx.get('max_length')}"
    elif kind == "string_pattern_mismatch":
        value = visible(str(err.get("input", "")))[:80]
        msg = (f"{value!r} is not a valid git branch name" if where in ("--branch", "--base")
               else f"{value!r} is not allowed here")
    return f"invalid {where}: {msg}"


def _follow(backend: Backend, name: str) -> str:
    """Print each change of one task until it leaves the active phases; return its phase."""
    from ..core.models import ACTIVE_PHASES

    last = None
    for kind, task in backend.watch(True, owner_name()):
        if task is None or task.name != name:
            continue
        line = f"{task.status.phase.value if task.status.phase else 'queued'}: {visible(task.status.summary or '')}"
        if line != last:
            click.echo(line)
            last = line
        if task.status.phase is not None and task.status.phase not in ACTIVE_PHASES \
                and task.status.pr_state != "merging":
            return task.status.phase.value
    return "error"


# ----------------------------------------------------------------------------- ls
@cli.command("ls")
@_common
@click.option("-A", "--all", "all_owners", is_flag=True, help="Everyone's tasks, not only yours.")
@click.option("--all-namespaces", is_flag=True, help="Tasks of every namespace (kube).")
@click.option("--status", "phase", type=click.Choice(PHASES), help="Only tasks in this phase.")
@click.option("-w", "--watch", is_flag=True, help="Keep the table live (a watch stream).")
@click.option("-o", "--output", "fmt", type=click.Choice(OUTPUT_FORMATS), default="table",
              help="table: short ids, cut to the terminal; wide: everything, in full.")
def ls(all_owners, all_namespaces, phase, watch, fmt, **kw):
    """List tasks (yours by default)."""
    backend = _ctx(kw, all_namespaces).backend()
    _notices(backend)
    owner = owner_name()
    if watch:
        try:
            _watch_table(backend, all_owners, owner, phase, fmt)
        except KeyboardInterrupt:
            sys.exit(130)
        return
    # The stored documents, not models: 1,000 tasks list in a blink.
    docs = [d for d in backend.list_docs(all_owners, owner) if not phase or _doc_phase(d) == phase]
    _print_tasks(docs, fmt, backend)


def _phase(t: AmpTask) -> str:
    return t.status.phase.value if t.status.phase else "queued"


def _doc_phase(doc: dict) -> str:
    return (doc.get("status") or {}).get("phase") or "queued"


def _short_ids(backend: Backend, shown: list[str]) -> dict:
    """Shortest unique prefixes among every id `resolve` could match, not only those shown."""
    from ..core.ids import short_ids

    wanted = set(shown)
    return {k: v for k, v in short_ids(set(backend.all_ids()) | wanted).items() if k in wanted}


def _print_tasks(tasks: list, fmt: str, backend: Backend) -> None:
    if fmt in ("json", "yaml", "name"):
        click.echo(output.dump(tasks, fmt))
        return
    wide = fmt == "wide"
    if not tasks:
        click.echo("No tasks found.", err=True)
        return
    short = None if wide else _short_ids(backend, [t["metadata"]["name"] for t in tasks])
    if output.is_tty():
        click.echo(output.terminal_table(tasks, wide, short))
    else:
        click.echo(output.plain_table([output.row(t, wide, short) for t in tasks],
                                      output.WIDE if wide else output.COLUMNS))


def _watch_table(backend: Backend, all_owners: bool, owner: str, phase: Optional[str],
                 fmt: str) -> None:
    wide = fmt == "wide"
    tasks: dict[str, AmpTask] = {}
    stream = backend.watch(all_owners, owner)
    keep = (lambda t: not phase or _phase(t) == phase)
    if output.is_tty():
        from rich.live import Live

        def table():
            shown = sorted(tasks.values(), key=lambda t: t.name)
            return output.rich_table(shown, wide, None if wide else _short_ids(backend, list(tasks)))

        with Live(output.rich_table([], wide), auto_refresh=False) as live:
            for kind, task in stream:
                if task is not None:
                    if kind == "DELETED":
                        tasks.pop(task.name, None)
                    elif keep(task):
                        tasks[task.name] = task
                live.update(table(), refresh=True)
        return
    # Piped: like `kubectl get -w`, a header and then one line per change (full ids: the set
    # of tasks grows, a prefix unique now may not stay so).
    headers = output.WIDE if wide else output.COLUMNS
    click.echo("\t".join(headers))
    for kind, task in stream:
        if task is None or not keep(task):
            continue
        cells = output.row(task, wide)
        if kind == "DELETED":
            cells[1] = "deleted"
        click.echo("\t".join(cells))
        sys.stdout.flush()


# ----------------------------------------------------------------------------- get
@cli.command()
@_common
@click.argument("task_id", shell_complete=_complete_ids)
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json", "yaml", "name"]),
              default="text")
def get(task_id, fmt, **kw):
    """Show everything about one task, attempts included."""
    task = _ctx(kw).backend().resolve(task_id)
    click.echo(output.describe(task) if fmt == "text" else output.dump([task], fmt, single=True))


# ----------------------------------------------------------------------------- logs
@cli.command()
@_common
@click.argument("task_id", shell_complete=_complete_ids)
@click.option("--attempt", type=click.IntRange(min=1), help="Attempt number (default: the latest).")
@click.option("-f", "--follow", is_flag=True, help="Stream the worker log while it runs.")
def logs(task_id, attempt, follow, **kw):
    """The worker log of an attempt, then its CI excerpt."""
    backend = _ctx(kw).backend()
    task = backend.resolve(task_id)
    if not task.status.attempts:
        raise CliError(f"task {task.name} has not started an attempt yet")
    n = attempt or task.status.attempts
    if not 1 <= n <= task.status.attempts:
        raise CliError(f"task {task.name} has attempts 1..{task.status.attempts}, not {n}")
    chunks = backend.worker_log(task, n, follow)
    first = next(chunks, None)  # a missing log is an error before any header is printed
    click.echo(f"==> attempt {n} worker log <==")
    pending = ""
    try:
        for chunk in _chain(first, chunks):
            # agent output: lines stay lines, every other control is shown, not obeyed; a CR
            # at a chunk's end waits for the next chunk (it may be half of a CRLF)
            text = pending + chunk
            pending = "\r" if text.endswith("\r") else ""
            click.echo(visible(text[:-1] if pending else text, single_line=False), nl=False)
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.exit(130)
    if pending:
        click.echo(visible(pending, single_line=False), nl=False)
    task = backend.resolve(task.name)
    rec = next((r for r in task.status.history if r.number == n), None)
    click.echo("")
    if rec and rec.excerpt:
        where = visible(rec.ci_run_url or f"run {rec.ci_run_id}")
        click.echo(f"==> attempt {n} CI excerpt ({where}) <==")
        click.echo(visible(rec.excerpt, single_line=False))
    elif rec and rec.ci_conclusion:
        click.echo(f"==> attempt {n} CI: {visible(rec.ci_conclusion)} <==")


def _chain(first, rest):
    if first is not None:
        yield first
    yield from rest


# ----------------------------------------------------------------------------- continue / abort / merge
@cli.command("continue")
@_common
@click.argument("task_id", shell_complete=_complete_ids)
@click.option("-m", "--message", required=True, help="New instructions for the agent.")
def continue_(task_id, message, **kw):
    """Give a task new instructions: a new attempt in the same thread, fresh attempt budget."""
    from ..core.models import ACTIVE_PHASES, MESSAGE_MAX
    from .inputs import refuse_nul

    if not message.strip():
        raise CliError("the message is empty")
    refuse_nul("-m", message)
    if len(message.strip()) > MESSAGE_MAX:
        raise CliError(f"invalid -m: too long: at most {MESSAGE_MAX:,} characters, "
                       f"got {len(message.strip()):,}")
    backend = _ctx(kw).backend()
    task = backend.resolve(task_id)
    if task.status.pr_state == "merged":
        raise CliError(f"task {task.name}'s pull request is already merged; start a new task")
    _preflight(backend, task.spec.agent)
    task = _update(backend, task, add_follow_up(message.strip(), owner_name()), True)
    if task.status.phase in ACTIVE_PHASES:
        click.echo(f"Task {task.name}: instructions queued behind attempt {task.status.attempts}")
    else:
        click.echo(f"Task {task.name}: continuing with attempt {task.status.attempts + 1}")


def _update(backend: Backend, task, change, refresh_credentials: bool = False):
    """A spec change, with validation errors as one line and the backend's notices shown."""
    from pydantic import ValidationError

    try:
        task = backend.update_spec(task, change, refresh_credentials=refresh_credentials)
    except ValidationError as exc:
        raise CliError(_validation_message(exc)) from None
    _notices(backend)
    return task


@cli.command()
@_common
@click.argument("task_id", shell_complete=_complete_ids)
def abort(task_id, **kw):
    """Stop a task: its running attempt is killed and CI is no longer awaited."""
    from ..core.models import ACTIVE_PHASES

    backend = _ctx(kw).backend()
    task = backend.resolve(task_id)
    if task.status.phase is not None and task.status.phase not in ACTIVE_PHASES:
        raise CliError(f"task {task.name} is already {task.status.phase.value}; nothing to abort")
    at = now_iso()
    _update(backend, task, lambda t: t.spec.model_copy(update={"abort_requested_at": at}))
    click.echo(f"Task {task.name}: abort requested")


@cli.command()
@_common
@click.argument("task_id", shell_complete=_complete_ids)
def merge(task_id, **kw):
    """Merge a successful task's pull request (method from the task's policy)."""
    from ..core.models import Phase

    backend = _ctx(kw).backend()
    task = backend.resolve(task_id)
    st = task.status
    if st.phase != Phase.SUCCESS:
        raise CliError(f"task {task.name} is {st.phase.value if st.phase else 'queued'}; "
                       "only a task in success can be merged")
    if st.pr_state != "open":
        raise CliError(f"task {task.name} has no open pull request (PR state {st.pr_state or 'none'})")
    _preflight(backend, None, needs_agent=False)
    at = now_iso()
    _update(backend, task, lambda t: t.spec.model_copy(update={"merge_requested_at": at}), True)
    click.echo(f"Task {task.name}: merge of PR #{st.pr_number} requested "
               f"(`ampx get {task.name}` shows the result)")


# ----------------------------------------------------------------------------- operator
@cli.command()
@click.option("-n", "--namespace", "namespaces", multiple=True, help="Namespace to watch (repeatable).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Watch every namespace.")
@click.option("--liveness", default=None, help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz.")
@click.option("-v", "--verbose", is_flag=True)
@click.option("--webhook-listen", default=None, metavar="[HOST]:PORT",
              envvar="AMPX_WEBHOOK_LISTEN", show_envvar=True,
              help="Receive GitHub webhook deliveries here, e.g. :8443 (secret from "
                   "AMPX_WEBHOOK_SECRET_FILE or AMPX_WEBHOOK_SECRET).")
def operator(namespaces, all_namespaces, liveness, verbose, webhook_listen):
    """Run the Kubernetes operator (kopf) with the kubeconfig or the in-cluster account."""
    from ..kube.run import run_operator

    if namespaces and all_namespaces:
        raise CliError("give -n NAMESPACE or --all-namespaces, not both")
    # issue 12 item 4: checked here, in every replica (the chart sets AMPX_WEBHOOK_LISTEN), and
    # started by the leader's operator startup
    if webhook_listen:
        from ..webhooks import load_secret, parse_listen

        try:
            parse_listen(webhook_listen)
            load_secret(os.environ.get("AMPX_WEBHOOK_SECRET_FILE"),
                        os.environ.get("AMPX_WEBHOOK_SECRET"))
        except (OSError, ValueError) as exc:
            raise CliError(f"--webhook-listen: {exc}") from None
        os.environ["AMPX_WEBHOOK_LISTEN"] = webhook_listen
    run_operator(list(namespaces), all_namespaces, liveness, verbose)


# ----------------------------------------------------------------------------- worker
from .worker_cmd import worker  # noqa: E402  (one attempt, or one of its isolated steps)

cli.add_command(worker)


# ----------------------------------------------------------------------------- export
@cli.command()
@_common
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="SQLite file to write (the history schema).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("-A", "--all", "all_owners", is_flag=True, default=True, hidden=True)
def export(db_path, force, all_owners, **kw):
    """Write every task and attempt into an SQLite file with the history schema."""
    from ..history.db import HistoryDB
    from ..record import record

    if db_path.exists() and not force:
        raise CliError(f"{db_path} exists; pass --force to overwrite it")
    backend = _ctx(kw).backend()
    _refuse_live_database(db_path)
    tasks = backend.list(True, owner_name())
    db = HistoryDB.create(db_path, overwrite=force)
    try:
        for task in tasks:
            record(db, task)
    finally:
        db.close()
    n = sum(len(t.status.history) for t in tasks)
    click.echo(f"Exported {len(tasks)} task(s) and {n} attempt(s) to {db_path}")


def _refuse_live_database(target: Path) -> None:
    """--force overwrites an export, never a runtime's own database (the local runtime's, or
    any file holding its task table): that would delete every task."""
    import sqlite3

    from ..local import paths

    live = paths.db_path(create=False)
    if not target.exists():
        return
    if live.exists() and os.path.samefile(target, live):
        raise CliError(f"{target} is the local runtime's database; export writes a new file")
    try:
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        try:
            has_tasks = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                     "AND name = 'local_tasks'").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return  # not SQLite (or unreadable): --force may replace it
    if has_tasks:
        raise CliError(f"{target} is a local runtime's database (it holds its tasks); "
                       "export writes a new file")


# ----------------------------------------------------------------------------- stats
@cli.command()
@_common
@click.option("--since", default="7d", show_default=True,
              help="The window: tasks created in the last 7d, 12h, 2w, 30m...")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A history file (an `ampx export`, or the operator's AMPX_HISTORY_DB); "
                   "default: the local runtime's.")
@click.option("--repo", help="Only this repository (as given to start, e.g. acme/api).")
@click.option("--owner", help="Only this owner's tasks.")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table")
def stats(since, db_path, repo, owner, fmt, **kw):
    """How tasks went: phases, attempts and time to green, flaky greens, breaker stops, tokens."""
    import json

    from ..history.stats import StatsError, day_chart, parse_since, stats_for_file, table_rows, HEADERS

    try:
        window = parse_since(since)
        if db_path is None:
            backend_name = resolve_backend_name(kw.get("backend") or click.get_current_context()
                                                .find_root().params.get("backend"))
            if backend_name == "kube":
                raise CliError("on Kubernetes the history is the operator's: `ampx export --db FILE`, "
                               "then `ampx stats --db FILE`")
            from ..local import paths

            db_path = paths.db_path(create=False)
            if not db_path.exists():
                raise CliError(f"no history yet ({db_path} does not exist): start a task first")
        report = stats_for_file(db_path, window, repo=repo, owner=owner)
    except StatsError as exc:
        raise CliError(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
        return
    if not report["total"]["tasks"]:
        click.echo(f"No tasks created in the last {since}.", err=True)
        return
    click.echo(output.plain_table([[visible(c) for c in r] for r in table_rows(report)], HEADERS))
    if output.is_tty():
        import shutil

        click.echo("")
        for line in day_chart(report, shutil.get_terminal_size().columns):
            click.echo(line)


# ----------------------------------------------------------------------------- daemon / config
@cli.group()
def daemon():
    """The local runtime's supervisor (started on demand by `ampx start`)."""


@daemon.command("status")
def daemon_status():
    """Say whether a supervisor runs for this data directory."""
    from ..local import paths
    from ..local.supervisor import running_pid

    pid = running_pid()
    if pid:
        click.echo(f"supervisor running (pid {pid}), data in {paths.home(create=False)}")
    else:
        click.echo(f"no supervisor running; data in {paths.home(create=False)}")
        sys.exit(3)  # like `systemctl status` (LSB: program is not running)


@daemon.command("stop")
def daemon_stop():
    """Stop the supervisor; running attempts go on and are picked up at the next start."""
    from ..local.supervisor import stop_background

    pid = stop_background()
    click.echo(f"supervisor (pid {pid}) stopped" if pid else "no supervisor was running")


@daemon.command("start")
def daemon_start():
    """Start the supervisor in the background, with this shell's credentials (a running one
    holding other values is restarted)."""
    from ..local.supervisor import ensure_current

    pid, changed = ensure_current()
    if changed:
        click.echo(f"supervisor restarted with this shell's credentials ({', '.join(changed)} "
                   f"changed); running (pid {pid})")
    else:
        click.echo(f"supervisor running (pid {pid})")


@daemon.command("run")
def daemon_run():
    """Run the supervisor in the foreground."""
    from ..local.supervisor import run_foreground

    sys.exit(run_foreground())


@cli.group("config")
def config_group():
    """Settings of the CLI (the runtime to use)."""


@config_group.command("set")
@click.argument("key")
@click.argument("value")
def config_set(key, value):
    """Set a key, e.g. `ampx config set backend kube`."""
    from .config import set_value

    click.echo(f"{key} = {value} (in {set_value(key, value)})")


@config_group.command("view")
def config_view():
    """Show the settings and where each comes from."""
    from .config import config_path, load, resolve_backend_name

    click.echo(f"file:    {config_path()}")
    for k, v in sorted(load().items()):
        click.echo(f"{k}: {v}")
    click.echo(f"backend in effect: {resolve_backend_name(None)}")


# ----------------------------------------------------------------------------- demo
@cli.command()
@click.option("--keep", is_flag=True, help="Keep the demo's data for `ampx ls/get/logs`.")
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to put the demo's files (default: a temporary directory).")
@click.option("--timeout", default=300, show_default=True, help="Give up after this many seconds.")
def demo(keep, workdir, timeout):
    """Run six tasks end to end offline (GitHub stand-in, scripted agent, local runtime)."""
    from ..sandbox.demo import run_demo

    sys.exit(run_demo(keep=keep, workdir=workdir, timeout_s=timeout))


# ----------------------------------------------------------------------------- completion
@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell):
    """Print the shell completion script: eval "$(ampx completion bash)"."""
    from click.shell_completion import get_completion_class

    comp = get_completion_class(shell)(cli, {}, "ampx", "_AMPX_COMPLETE")
    click.echo(comp.source())


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: every expected failure is one line on stderr and exit code 1."""
    import sqlite3

    from ..local.paths import pin_home

    try:
        pin_home()  # before any child (supervisor, worker) inherits AMPX_HOME
        rc = cli.main(args=argv, prog_name="ampx", standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except click.exceptions.Abort:  # Ctrl-C at a prompt
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (CliError, KubeError, IdError, ConfigError) as exc:
        _error(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except sqlite3.DatabaseError as exc:
        _error(f"database: {exc}")
    except UnicodeDecodeError as exc:
        _error(f"a file ampx read is not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:  # permission denied, no space left, read-only file system...
        where = f": {exc.filename}" if exc.filename else ""
        _error(f"{exc.strerror or exc}{where}")
    except Exception as exc:  # still one line; AMPX_DEBUG=1 shows the traceback
        from ..redact import redact
        from ..settings import env

        if env("AMPX_DEBUG"):
            raise
        if type(exc).__name__ == "ValidationError":  # pydantic's, from a model we built
            _error(_validation_message(exc))
        _error(f"{type(exc).__name__}: {redact(str(exc))} (set AMPX_DEBUG=1 for the traceback)")
    sys.exit(0)


def _error(message: str) -> None:
    """The one line of a failure: first line only, control characters shown, exit 1."""
    lines = message.strip().splitlines() or ["unknown error"]
    click.echo(f"error: {visible(lines[0])}", err=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
