"""`ampx`: kubectl-style commands over either runtime (a cluster, or the local supervisor)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click
from pydantic import ValidationError

from ..core.ids import IdError, default_branch, new_task_id
from ..core.models import ACTIVE_PHASES, Phase, AmpTask, AmpTaskSpec, Limits
from ..kube.errors import KubeError
from . import output
from .backend import Backend, CliError, add_follow_up, now_iso, owner_name
from .config import ConfigError, resolve_backend_name

OUTPUT_FORMATS = ["table", "wide", "json", "yaml", "name"]


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
        return [t.name for t in b.list(True, owner_name()) if t.name.startswith(incomplete.lower())]
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
@click.option("--task-file", type=click.File("r"), help="Read the task from a file ('-' = stdin).")
@click.option("--title", help="Short title (default: the task's first line).")
@click.option("--max-attempts", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--base", "base_branch", help="Base branch (default: the repository's default).")
@click.option("--branch", help="Task branch (default: amp/<slug>-<id6>).")
@click.option("--agent", default="amp", show_default=True, help="Agent profile.")
@click.option("--timeout", "timeout_minutes", type=click.IntRange(1, 1440),
              help="Time limit of one attempt, in minutes (default 60).")
@click.option("--budget", "budget_minutes", type=click.IntRange(1, 10080),
              help="Wall-time budget of the whole run (attempts and CI waits), in minutes; "
                   "when spent the task stops at needs_review. Default: none.")
@click.option("-w", "--watch", is_flag=True, help="Follow the task until it finishes.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json", "yaml", "name"]),
              default="text")
def start(repo, task_text, task_file, title, max_attempts, base_branch, branch, agent,
          timeout_minutes, budget_minutes, watch, fmt, **kw):
    """Start a task: an agent works on a branch until CI is green."""
    if task_text and task_file:
        raise CliError("give --task or --task-file, not both")
    if task_file:
        task_text = task_file.read()
    if not task_text or not task_text.strip():
        raise CliError("the task is empty: give --task \"…\" or --task-file PATH")
    task_id = new_task_id()
    try:
        spec = AmpTaskSpec(repo=repo.strip(), prompt=task_text.strip(), title=title,
                           base_branch=base_branch, branch=branch, max_attempts=max_attempts,
                           agent=agent,
                           limits=Limits(attempt_timeout_minutes=timeout_minutes or 60,
                                         task_timeout_minutes=budget_minutes))
        if not spec.branch:
            spec = spec.model_copy(update={"branch": default_branch(spec.display_title(), task_id)})
            AmpTaskSpec.model_validate(spec.model_dump())
    except ValidationError as exc:
        raise CliError(_validation_message(exc)) from None
    c = _ctx(kw)
    task = c.backend().create(task_id, spec, owner_name())
    if fmt == "text":
        click.echo(f"Task {task.name} created on branch {task.spec.branch}")
    else:
        click.echo(output.dump([task], fmt, single=True))
    if watch:
        _follow(c.backend(), task.name)


def _validation_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    names = {"repo": "--repo", "prompt": "--task", "branch": "--branch", "base_branch": "--base",
             "max_attempts": "--max-attempts", "agent": "--agent"}
    msg = err["msg"].removeprefix("Value error, ")
    if where == "repo":
        msg = "not a GitHub repository (use git@github.com:owner/repo.git, https://github.com/owner/repo or owner/repo)"
    return f"invalid {names.get(where, where)}: {msg}"


def _follow(backend: Backend, name: str) -> None:
    """Print each change of one task until it leaves the active phases."""
    last = None
    for kind, task in backend.watch(True, owner_name()):
        if task is None or task.name != name:
            continue
        line = f"{task.status.phase.value if task.status.phase else 'queued'}: {task.status.summary or ''}"
        if line != last:
            click.echo(line)
            last = line
        if task.status.phase is not None and task.status.phase not in ACTIVE_PHASES \
                and task.status.pr_state != "merging":
            return


# ----------------------------------------------------------------------------- ls
@cli.command("ls")
@_common
@click.option("-A", "--all", "all_owners", is_flag=True, help="Everyone's tasks, not only yours.")
@click.option("--all-namespaces", is_flag=True, help="Tasks of every namespace (kube).")
@click.option("--status", "phase", type=click.Choice([p.value for p in Phase]),
              help="Only tasks in this phase.")
@click.option("-w", "--watch", is_flag=True, help="Keep the table live (a watch stream).")
@click.option("-o", "--output", "fmt", type=click.Choice(OUTPUT_FORMATS), default="table")
def ls(all_owners, all_namespaces, phase, watch, fmt, **kw):
    """List tasks (yours by default)."""
    backend = _ctx(kw, all_namespaces).backend()
    owner = owner_name()
    if watch:
        _watch_table(backend, all_owners, owner, phase, fmt)
        return
    tasks = [t for t in backend.list(all_owners, owner) if not phase or _phase(t) == phase]
    _print_tasks(tasks, fmt)


def _phase(t: AmpTask) -> str:
    return t.status.phase.value if t.status.phase else "queued"


def _print_tasks(tasks: list[AmpTask], fmt: str) -> None:
    if fmt in ("json", "yaml", "name"):
        click.echo(output.dump(tasks, fmt))
        return
    wide = fmt == "wide"
    if not tasks:
        click.echo("No tasks found.", err=True)
        return
    if output.is_tty():
        from rich.console import Console

        Console().print(output.rich_table(tasks, wide))
    else:
        click.echo(output.plain_table([output.row(t, wide) for t in tasks],
                                      output.WIDE if wide else output.COLUMNS))


def _watch_table(backend: Backend, all_owners: bool, owner: str, phase: Optional[str],
                 fmt: str) -> None:
    wide = fmt == "wide"
    tasks: dict[str, AmpTask] = {}
    stream = backend.watch(all_owners, owner)
    keep = (lambda t: not phase or _phase(t) == phase)
    if output.is_tty():
        from rich.live import Live

        with Live(output.rich_table([], wide), auto_refresh=False) as live:
            for kind, task in stream:
                if task is not None:
                    if kind == "DELETED":
                        tasks.pop(task.name, None)
                    elif keep(task):
                        tasks[task.name] = task
                live.update(output.rich_table(sorted(tasks.values(), key=lambda t: t.name), wide),
                            refresh=True)
        return
    # Piped: like `kubectl get -w`, a header and then one line per change.
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
@click.option("--attempt", type=int, help="Attempt number (default: the latest).")
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
    click.echo(f"==> attempt {n} worker log <==")
    for chunk in backend.worker_log(task, n, follow):
        click.echo(chunk, nl=False)
        sys.stdout.flush()
    task = backend.resolve(task.name)
    rec = next((r for r in task.status.history if r.number == n), None)
    click.echo("")
    if rec and rec.excerpt:
        click.echo(f"==> attempt {n} CI excerpt ({rec.ci_run_url or 'run ' + str(rec.ci_run_id)}) <==")
        click.echo(rec.excerpt)
    elif rec and rec.ci_conclusion:
        click.echo(f"==> attempt {n} CI: {rec.ci_conclusion} <==")


# ----------------------------------------------------------------------------- continue / abort / merge
@cli.command("continue")
@_common
@click.argument("task_id", shell_complete=_complete_ids)
@click.option("-m", "--message", required=True, help="New instructions for the agent.")
def continue_(task_id, message, **kw):
    """Give a task new instructions: a new attempt in the same thread, fresh attempt budget."""
    if not message.strip():
        raise CliError("the message is empty")
    backend = _ctx(kw).backend()
    task = backend.resolve(task_id)
    if task.status.pr_state == "merged":
        raise CliError(f"task {task.name}'s pull request is already merged; start a new task")
    task = backend.update_spec(task, add_follow_up(message.strip(), owner_name()))
    if task.status.phase in ACTIVE_PHASES:
        click.echo(f"Task {task.name}: instructions queued behind attempt {task.status.attempts}")
    else:
        click.echo(f"Task {task.name}: continuing with attempt {task.status.attempts + 1}")


@cli.command()
@_common
@click.argument("task_id", shell_complete=_complete_ids)
def abort(task_id, **kw):
    """Stop a task: its running attempt is killed and CI is no longer awaited."""
    backend = _ctx(kw).backend()
    task = backend.resolve(task_id)
    if task.status.phase is not None and task.status.phase not in ACTIVE_PHASES:
        raise CliError(f"task {task.name} is already {task.status.phase.value}; nothing to abort")
    at = now_iso()
    backend.update_spec(task, lambda t: t.spec.model_copy(update={"abort_requested_at": at}))
    click.echo(f"Task {task.name}: abort requested")


@cli.command()
@_common
@click.argument("task_id", shell_complete=_complete_ids)
def merge(task_id, **kw):
    """Merge a successful task's pull request (method from the task's policy)."""
    backend = _ctx(kw).backend()
    task = backend.resolve(task_id)
    st = task.status
    if st.phase != Phase.SUCCESS:
        raise CliError(f"task {task.name} is {st.phase.value if st.phase else 'queued'}; "
                       "only a task in success can be merged")
    if st.pr_state != "open":
        raise CliError(f"task {task.name} has no open pull request (PR state {st.pr_state or 'none'})")
    at = now_iso()
    backend.update_spec(task, lambda t: t.spec.model_copy(update={"merge_requested_at": at}))
    click.echo(f"Task {task.name}: merge of PR #{st.pr_number} requested")


# ----------------------------------------------------------------------------- operator
@cli.command()
@click.option("-n", "--namespace", "namespaces", multiple=True, help="Namespace to watch (repeatable).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Watch every namespace.")
@click.option("--liveness", default=None, help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz.")
@click.option("-v", "--verbose", is_flag=True)
def operator(namespaces, all_namespaces, liveness, verbose):
    """Run the Kubernetes operator (kopf) with the kubeconfig or the in-cluster account."""
    from ..kube.run import run_operator

    if namespaces and all_namespaces:
        raise CliError("give -n NAMESPACE or --all-namespaces, not both")
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
    tasks = _ctx(kw).backend().list(True, owner_name())
    db = HistoryDB.create(db_path, overwrite=force)
    try:
        for task in tasks:
            record(db, task)
    finally:
        db.close()
    n = sum(len(t.status.history) for t in tasks)
    click.echo(f"Exported {len(tasks)} task(s) and {n} attempt(s) to {db_path}")


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
        click.echo(f"supervisor running (pid {pid}), data in {paths.home()}")
    else:
        click.echo(f"no supervisor running; data in {paths.home()}")
        sys.exit(3)


@daemon.command("stop")
def daemon_stop():
    """Stop the supervisor; running attempts go on and are picked up at the next start."""
    from ..local.supervisor import stop_background

    pid = stop_background()
    click.echo(f"supervisor (pid {pid}) stopped" if pid else "no supervisor was running")


@daemon.command("start")
def daemon_start():
    """Start the supervisor in the background, with this shell's environment."""
    from ..local.supervisor import start_background

    click.echo(f"supervisor running (pid {start_background()})")


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
    """Run five tasks end to end offline (GitHub stand-in, scripted agent, local runtime)."""
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
    try:
        rc = cli.main(args=argv, prog_name="ampx", standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (CliError, KubeError, IdError, ConfigError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # still one line; AMPX_DEBUG=1 shows the traceback
        from ..redact import redact
        from ..settings import env

        if env("AMPX_DEBUG"):
            raise
        click.echo(f"error: {type(exc).__name__}: {redact(str(exc))} "
                   "(set AMPX_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
