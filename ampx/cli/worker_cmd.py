"""`ampx worker`: one attempt, whole (`--task --attempt`) or as its three isolated steps."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import click

from .backend import CliError

TOKEN_MAX_BYTES = 64 * 1024


def _spec(path: Path):
    from ..worker.attempt_spec import AttemptSpecError, load_attempt_spec

    try:
        return load_attempt_spec(path)
    except AttemptSpecError as exc:
        raise CliError(str(exc)) from None


def _token(path: Path) -> str:
    from ..redact import register_secret

    try:
        with open(path, "rb") as fh:
            raw = fh.read(TOKEN_MAX_BYTES + 1)
    except OSError as exc:
        raise CliError(f"cannot read token file {path}: {exc.strerror}") from None
    token = raw.decode("utf-8", errors="replace").strip()
    if not token or len(raw) > TOKEN_MAX_BYTES or any(c.isspace() for c in token):
        raise CliError(f"token file {path} does not hold one token")
    register_secret(token)
    return token


def _token_source():
    from ..github.auth import provider_from_settings
    from ..settings import GitHubSettings

    return provider_from_settings(GitHubSettings.from_env())


def _credentials_from_stdin() -> None:
    """Take the credential variables from stdin, after becoming non-dumpable: in the initial
    environment they would be readable in /proc until the worker had started."""
    import json
    import os

    from ..settings import SECRET_ENV_VARS
    from ..worker.harden import forbid_inspection

    forbid_inspection()
    raw = sys.stdin.buffer.read(TOKEN_MAX_BYTES * 4 + 1)
    try:
        doc = json.loads(raw.decode("utf-8") or "{}")
    except (UnicodeDecodeError, ValueError):
        doc = None
    if not isinstance(doc, dict) or len(raw) > TOKEN_MAX_BYTES * 4:
        raise CliError("--credentials-stdin: stdin must hold one JSON object of credentials")
    for name, value in doc.items():
        if name in SECRET_ENV_VARS and isinstance(value, str):
            os.environ[name] = value


_FILE = click.Path(dir_okay=False, path_type=Path)
_DIR = click.Path(file_okay=False, path_type=Path)


@click.group(invoke_without_command=True)
@click.option("--task", "task_name", help="AmpTask name.")
@click.option("--attempt", "number", type=click.IntRange(1, 10_000))
@click.option("--backend", type=click.Choice(["local", "kube"]), default="local", show_default=True,
              help="local: a whole attempt of the local runtime. On Kubernetes an attempt is "
                   "its pod's steps (prepare, agent, publish).")
@click.option("--credentials-stdin", is_flag=True, hidden=True,
              help="Read the credential variables as a JSON object on stdin (local launcher).")
@click.pass_context
def worker(ctx, task_name, number, backend, credentials_stdin):
    """Run one attempt of a task (what each Job, or local attempt process, runs), or one of its
    steps: prepare (token), agent (agent key only), publish (token)."""
    if ctx.invoked_subcommand is not None:
        return
    if not task_name or number is None:
        raise CliError("give --task and --attempt (or a step: prepare, agent, publish)")
    if backend == "kube":  # the pod runs the steps: no process there may hold every credential
        raise CliError("on Kubernetes an attempt runs as its pod's steps: "
                       "ampx worker prepare | agent | publish (see `ampx worker --help`)")
    from ..local.paths import local_store
    from ..worker.clients import LocalTaskClient
    from ..worker.local_attempt import run_local_attempt

    if credentials_stdin:
        _credentials_from_stdin()

    sys.exit(run_local_attempt(LocalTaskClient(local_store()), task_name, number, _token_source))


@worker.command()
@click.option("--attempt-file", required=True, type=_FILE, help="The attempt's JSON file.")
@click.option("--token-file", required=True, type=_FILE, help="File holding the GitHub token.")
@click.option("--private", required=True, type=_DIR, help="Private directory (never the agent's).")
@click.option("--workspace", required=True, type=_DIR, help="The agent's checkout to create.")
@click.option("--report-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the report when the attempt cannot start "
                   "(Kubernetes: /dev/termination-log).")
def prepare(attempt_file, token_file, private, workspace, report_file):
    """Clone privately and create the agent's checkout (exit 2: configuration or a branch this
    task may not push, 8: git); when it cannot, the attempt's report says why."""
    from ..core.models import WorkerReport
    from ..worker.harden import forbid_inspection
    from ..worker.publish_step import emit_report, now
    from ..worker.lines import one_line
    from ..worker.prepare_step import PrepareFailed, prepare as run_prepare

    forbid_inspection()
    spec = _spec(attempt_file)
    token = _token(token_file)

    def log(line: str) -> None:
        click.echo(one_line(line))

    try:
        start = run_prepare(spec, token, private, workspace, log=log)
    except PrepareFailed as exc:
        click.echo(f"[ampx] {exc.reason}", err=True)
        code, outcome = exc.outcome
        emit_report(WorkerReport(outcome=outcome, reason=exc.reason[:2000], exit_code=code,
                                 finished_at=now()), report_file, sys.stdout)
        sys.exit(code)
    click.echo(f"[ampx] attempt {spec.number} starts at {start.start_sha[:12]} on {start.branch}")


@worker.command()
@click.option("--attempt-file", required=True, type=_FILE, help="The attempt's JSON file.")
@click.option("--workspace", required=True, type=_DIR, help="The agent's checkout.")
@click.option("--control", required=True, type=_DIR, help="Where agent-result.json goes.")
@click.option("--home", type=_DIR, help="The agent's HOME (default: CONTROL/home).")
def agent(attempt_file, workspace, control, home):
    """Run the agent with only its own key (prints AMPX_THREAD <id>; writes agent-result.json)."""
    from ..worker.agent_step import run_agent_step

    sys.exit(run_agent_step(_spec(attempt_file), workspace, control, home))


@worker.command()
@click.option("--attempt-file", required=True, type=_FILE, help="The attempt's JSON file.")
@click.option("--token-file", required=True, type=_FILE, help="File holding the GitHub token.")
@click.option("--private", required=True, type=_DIR, help="The prepare step's private directory.")
@click.option("--workspace", required=True, type=_DIR, help="The agent's checkout.")
@click.option("--control", required=True, type=_DIR, help="Where agent-result.json appears.")
@click.option("--report-file", type=_FILE, help="Where the report JSON goes "
              "(Kubernetes: /dev/termination-log).")
def publish(attempt_file, token_file, private, workspace, control, report_file):
    """Wait for the agent, then commit from a private snapshot and push (prints AMPX_REPORT)."""
    from ..settings import credential_values
    from ..worker.harden import forbid_inspection
    from ..worker.lines import one_line
    from ..worker.publish_step import (DEADLINE_GRACE_S, Publisher, emit_report,
                                       wait_for_agent_result)

    forbid_inspection()
    spec = _spec(attempt_file)
    token = _token(token_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deadline = time.monotonic() + spec.timeout_s + DEADLINE_GRACE_S
    result = wait_for_agent_result(control, deadline, stop)
    try:  # read again: on Kubernetes the operator renews the token during a long attempt
        token = _token(token_file)
    except CliError:
        pass  # gone or spoiled since the start: push with the token checked then
    publisher = Publisher(spec, token, private, workspace, credential_values(),
                          lambda line: click.echo(one_line(line)))
    code, report = publisher.run(result, stopped=stop.is_set(), timed_out=result is None)
    emit_report(report, report_file, sys.stdout)
    sys.exit(code)
