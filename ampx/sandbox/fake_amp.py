"""A scripted stand-in for the ``amp`` CLI, for the tests and the offline ``ampx demo``.

It is NOT an agent: it speaks amp's command-line interface (see reference/amp-cli.md) and makes
deterministic edits chosen by ``@fake`` directives in the message, so the orchestrator can be
exercised end to end without the Amp service. Standard library only, so it also runs as a
plain script (``python fake_amp.py``).

Commands::

    amp threads new                       -> prints https://ampcode.com/threads/T-<uuid>
    amp threads continue <T-id|URL> -x [message] [--stream-json] [--dangerously-allow-all]
    amp -x [message] [--stream-json]      -> a turn in a new thread
    (no message argument: the message is read from stdin)

Errors as in amp: invalid thread id -> "Invalid thread URL or ID", exit 1; unknown option,
unknown thread, missing ``AMP_API_KEY`` (real amp would wait for an interactive login; this one
fails at once) -> exit 1.

Threads are JSON files under ``$AMP_FAKE_HOME/threads`` (default
``$XDG_DATA_HOME/ampx-fake-amp``, i.e. ``~/.local/share/ampx-fake-amp``) holding the messages
and the pending rules, so later turns remember earlier ones.

Directives: every message line whose first word is ``@fake``; run in order, paths relative to
the current directory (the checkout) and confined to it. TEXT is the rest of the line, with
``\\n``, ``\\t`` and ``\\\\`` escapes::

    @fake write PATH TEXT          create/overwrite PATH with TEXT
    @fake append PATH TEXT         append TEXT to PATH
    @fake delete PATH              delete PATH
    @fake nothing                  make no edits (also the behaviour with no directives)
    @fake reply TEXT               the final assistant message (the ``result`` text)
    @fake commit MESSAGE           ``git add -A && git commit`` like an agent that commits itself
    @fake touch-workflow           append a line to .github/workflows/ci.yml
    @fake delete-tests             delete the first test file found (sorted)
    @fake echo-prompt PATH         write this turn's whole message to PATH (may be absolute)
    @fake sh COMMAND               run COMMAND (the rest of the line, no escapes) with /bin/sh
                                   in the checkout, as an agent's shell tool would (it may do
                                   anything the agent's user may); its output (first 4000
                                   characters) goes into the transcript
    @fake sleep SECONDS            sleep, then go on
    @fake fail [TEXT]              stop: result event with is_error true, subtype "error", exit 1
    @fake crash [TEXT]             stop: TEXT on stderr, exit 2, no result event
    @fake hang [PIDFILE]           start a helper child that sleeps, then sleep forever; writes
                                   "<own pid> <child pid>" to PIDFILE (may be absolute)
    @fake hang-stubborn [PIDFILE]  the same, but both processes ignore SIGTERM
    @fake when "SUBSTRING" DIRECTIVE
                                   remember DIRECTIVE in the thread; it runs once, on a LATER
                                   turn whose message contains SUBSTRING (after that turn's own
                                   directives). Identical rules are remembered once.

Token usage is deterministic: about one token per four characters.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

VERSION = "0.0.0-ampx-fake"
THREAD_ID_RE = re.compile(r"T-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TOOLS = ["apply_patch", "shell_command", "read_file", "list_directory", "grep"]
WORKFLOW_PATH = ".github/workflows/ci.yml"
_TEST_FILE_RE = re.compile(
    r"(^|/)(tests?|__tests__)/|(^|/)test_[^/]*\.py$|_test\.(py|go)$|\.(test|spec)\.[jt]sx?$"
)

_FLAGS_WITH_VALUE = {"--visibility", "--title", "-l", "--label", "-m", "--mode", "--executor"}
_BOOL_FLAGS = {"--stream-json", "--dangerously-allow-all", "--no-archive-after-execute"}

USAGE = """Usage: amp [options] [command]   (ampx fake amp, a scripted stand-in)

Options:
  -x, --execute [message]   run one turn non-interactively (message from stdin if absent)
  --stream-json             JSON lines output (needs -x)
  --dangerously-allow-all   accepted
  -V, --version, -h, --help

Commands:
  threads new               create a thread and print its URL
  threads continue <id>     continue a thread
"""


class Stop(Exception):
    """A directive ended the turn early."""

    def __init__(self, kind: str, text: str):
        super().__init__(text)
        self.kind = kind
        self.text = text


class CliError(Exception):
    """Bad command line: message for stderr, exit 1."""


# -- thread storage ----------------------------------------------------------------------------


def fake_home() -> Path:
    home = os.environ.get("AMP_FAKE_HOME")
    if home:
        return Path(home)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "ampx-fake-amp"


def _thread_path(thread_id: str) -> Path:
    return fake_home() / "threads" / f"{thread_id}.json"


def load_thread(thread_id: str) -> dict | None:
    try:
        return json.loads(_thread_path(thread_id).read_text())
    except FileNotFoundError:
        return None


def save_thread(thread: dict) -> None:
    path = _thread_path(thread["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(thread, f, indent=1)
    os.replace(tmp, path)


def new_thread() -> dict:
    thread = {"id": f"T-{uuid.uuid4()}", "created_at": time.time(), "messages": [], "rules": []}
    save_thread(thread)
    return thread


def thread_url(thread_id: str) -> str:
    base = os.environ.get("AMP_URL", "https://ampcode.com/").rstrip("/")
    return f"{base}/threads/{thread_id}"


def parse_thread_ref(ref: str) -> str | None:
    """A bare ``T-<uuid>`` or a URL ending in one; None when invalid."""
    candidate = ref.rstrip("/").rsplit("/", 1)[-1] if "/" in ref else ref
    return candidate if THREAD_ID_RE.fullmatch(candidate) else None


# -- directives --------------------------------------------------------------------------------


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)


def parse_directives(message: str) -> list[str]:
    """The text after ``@fake`` of every directive line, in order."""
    out = []
    for line in message.splitlines():
        stripped = line.strip()
        if stripped == "@fake" or stripped.startswith("@fake "):
            body = stripped[len("@fake"):].strip()
            if body:
                out.append(body)
    return out


_WHEN_RE = re.compile(r'"((?:[^"\\]|\\.)*)"\s+(.+)', re.DOTALL)


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


class Turn:
    """One turn: runs directives in the workspace and emits amp's events."""

    def __init__(self, thread: dict, message: str, stream: bool):
        self.thread = thread
        self.message = message
        self.stream = stream
        self.cwd = Path.cwd()
        self.done: list[str] = []
        self.reply: str | None = None
        self.num_turns = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self._tool_counter = 0

    # output ----------------------------------------------------------------------------------

    def emit(self, event: dict) -> None:
        if self.stream:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()

    def assistant(self, content: list[dict]) -> None:
        text = json.dumps(content)
        usage = {"input_tokens": tokens(self.message) + 50 * (self.num_turns + 1),
                 "output_tokens": tokens(text)}
        self.num_turns += 1
        self.tokens_in += usage["input_tokens"]
        self.tokens_out += usage["output_tokens"]
        self.emit({
            "type": "assistant",
            "message": {"id": f"msg_{self.num_turns:04d}", "type": "message", "role": "assistant",
                        "model": "fake", "content": content, "stop_reason": None,
                        "usage": usage},
            "parent_tool_use_id": None,
            "session_id": self.thread["id"],
        })

    def tool(self, name: str, tool_input: dict, say: str, outcome: str = "ok") -> None:
        self._tool_counter += 1
        tool_id = f"toolu_{self._tool_counter:04d}"
        self.assistant([
            {"type": "text", "text": say},
            {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input},
        ])
        self.emit({
            "type": "user",
            "message": {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": tool_id, "content": outcome,
                 "is_error": False}]},
            "parent_tool_use_id": None,
            "session_id": self.thread["id"],
        })

    # workspace -------------------------------------------------------------------------------

    def path(self, raw: str, allow_absolute: bool = False) -> Path:
        candidate = Path(raw)
        if candidate.is_absolute():
            if allow_absolute:
                return candidate
            raise Stop("fail", f"refusing absolute path {raw}")
        resolved = (self.cwd / candidate).resolve()
        if resolved != self.cwd.resolve() and self.cwd.resolve() not in resolved.parents:
            raise Stop("fail", f"refusing path outside the workspace: {raw}")
        return resolved

    def _split(self, body: str, parts: int, usage: str) -> list[str]:
        fields = body.split(None, parts - 1)
        if len(fields) < parts:
            raise Stop("fail", f"bad directive '@fake {body}': expected {usage}")
        return fields

    def run_directive(self, body: str, from_rule: bool = False) -> None:
        verb, _, rest = body.partition(" ")
        rest = rest.strip()
        if verb == "write" or verb == "append":
            raw_path, text = (self._split(rest, 2, f"{verb} PATH TEXT") if " " in rest
                              else (rest, ""))
            if not raw_path:
                raise Stop("fail", f"bad directive '@fake {body}': expected {verb} PATH TEXT")
            target = self.path(raw_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "a" if verb == "append" else "w") as f:
                f.write(unescape(text))
            self.tool("apply_patch", {"path": raw_path, "action": verb},
                      f"{'Appending to' if verb == 'append' else 'Writing'} {raw_path}")
            self.done.append(f"{verb} {raw_path}")
        elif verb == "delete":
            target = self.path(rest)
            if target.is_dir():
                raise Stop("fail", f"refusing to delete directory {rest}")
            target.unlink(missing_ok=True)
            self.tool("apply_patch", {"path": rest, "action": "delete"}, f"Deleting {rest}")
            self.done.append(f"delete {rest}")
        elif verb == "nothing":
            self.done.append("nothing")
        elif verb == "reply":
            self.reply = unescape(rest)
        elif verb == "commit":
            message = rest or "agent commit"
            cmd = ["git", "-c", "user.name=Fake Amp", "-c", "user.email=fake-amp@example.invalid"]
            subprocess.run(["git", "add", "-A"], check=True, stdin=subprocess.DEVNULL)
            subprocess.run(cmd + ["commit", "-q", "-m", message], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            self.tool("shell_command", {"command": f"git commit -m {shlex.quote(message)}"},
                      "Committing")
            self.done.append("commit")
        elif verb == "touch-workflow":
            target = self.path(WORKFLOW_PATH)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "a") as f:
                f.write("# touched by fake amp\n")
            self.tool("apply_patch", {"path": WORKFLOW_PATH, "action": "append"},
                      f"Editing {WORKFLOW_PATH}")
            self.done.append(f"touch {WORKFLOW_PATH}")
        elif verb == "delete-tests":
            victim = next(iter(sorted(self._test_files())), None)
            if victim is None:
                self.done.append("no test file to delete")
            else:
                (self.cwd / victim).unlink()
                self.tool("apply_patch", {"path": victim, "action": "delete"}, f"Deleting {victim}")
                self.done.append(f"delete {victim}")
        elif verb == "echo-prompt":
            target = self.path(rest, allow_absolute=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.message)
            self.done.append(f"echo-prompt {rest}")
        elif verb == "sh":
            if not rest:
                raise Stop("fail", f"bad directive '@fake {body}': expected sh COMMAND")
            command = rest  # as written: no escapes, the shell has its own
            proc = subprocess.run(["/bin/sh", "-c", command], cwd=self.cwd,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
            output = proc.stdout.decode("utf-8", errors="replace")[:4000]
            self.tool("shell_command", {"command": command}, "Running a shell command",
                      outcome=f"exit {proc.returncode}\n{output}")
            self.done.append(f"sh (exit {proc.returncode})")
        elif verb == "sleep":
            try:
                time.sleep(float(rest))
            except ValueError:
                raise Stop("fail", f"bad directive '@fake {body}': expected sleep SECONDS")
        elif verb == "fail":
            raise Stop("fail", rest or "failing as instructed")
        elif verb == "crash":
            raise Stop("crash", rest or "fake amp crashed as instructed")
        elif verb in ("hang", "hang-stubborn"):
            self.hang(stubborn=verb == "hang-stubborn", pidfile=rest or None)
        elif verb == "when":
            if from_rule:
                raise Stop("fail", "a 'when' rule cannot contain another 'when'")
            match = _WHEN_RE.fullmatch(rest)
            if not match:
                raise Stop("fail", f'bad directive \'@fake {body}\': expected when "TEXT" DIRECTIVE')
            rule = {"when": unescape(match.group(1)), "do": match.group(2).strip(), "used": False}
            known = [(r["when"], r["do"]) for r in self.thread["rules"]]
            if (rule["when"], rule["do"]) not in known:
                self.thread["rules"].append(rule)
                self.done.append(f'remember rule when "{rule["when"]}"')
        else:
            raise Stop("fail", f"unknown directive '@fake {verb}'")

    def _test_files(self):
        for root, dirs, files in os.walk(self.cwd):
            dirs[:] = [d for d in dirs if d != ".git"]
            for name in files:
                rel = os.path.relpath(os.path.join(root, name), self.cwd)
                if _TEST_FILE_RE.search(rel):
                    yield rel

    def hang(self, stubborn: bool, pidfile: str | None) -> None:
        code = "import signal, time\n"
        if stubborn:
            code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        code += "time.sleep(3600)\n"
        # The helper inherits stdout/stderr like a stray background job an agent started.
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
        if stubborn:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if pidfile:
            target = self.path(pidfile, allow_absolute=True)
            target.write_text(f"{os.getpid()} {child.pid}\n")
        self.assistant([{"type": "text", "text": f"Waiting on helper process {child.pid}"}])
        while True:
            time.sleep(3600)

    # the turn --------------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        tid = self.thread["id"]
        self.emit({"type": "system", "subtype": "init", "session_id": tid, "cwd": str(self.cwd),
                   "tools": TOOLS, "mcp_servers": []})
        self.emit({"type": "user", "message": {"role": "user", "content": [
            {"type": "text", "text": self.message}]}, "parent_tool_use_id": None, "session_id": tid})
        self.thread["messages"].append({"role": "user", "content": self.message})
        pending = [r for r in self.thread["rules"] if not r["used"]]
        stop: Stop | None = None
        try:
            for body in parse_directives(self.message):
                self.run_directive(body)
            for rule in pending:
                if rule["when"] in self.message:
                    rule["used"] = True
                    self.done.append(f'rule when "{rule["when"]}"')
                    self.run_directive(rule["do"], from_rule=True)
        except Stop as exc:
            stop = exc
        except OSError as exc:
            stop = Stop("fail", f"{type(exc).__name__}: {exc}")

        if stop is not None and stop.kind == "crash":
            self.thread["messages"].append({"role": "assistant", "content": "(crashed)"})
            save_thread(self.thread)
            sys.stderr.write(f"Error: {stop.text}\n")
            return 2
        if stop is not None:
            final = f"Error: {stop.text}"
        elif self.reply is not None:
            final = self.reply
        elif self.done:
            final = "Done: " + "; ".join(self.done) + "."
        else:
            final = "No @fake directives found; nothing to do."
        self.assistant([{"type": "text", "text": final}])
        self.thread["messages"].append({"role": "assistant", "content": final})
        save_thread(self.thread)
        is_error = stop is not None
        self.emit({
            "type": "result",
            "subtype": "error" if is_error else "success",
            "is_error": is_error,
            "num_turns": self.num_turns,
            "result": final,
            "session_id": tid,
            "duration_ms": int((time.monotonic() - started) * 1000),
            "usage": {"input_tokens": self.tokens_in, "output_tokens": self.tokens_out},
        })
        if not self.stream:
            (sys.stderr if is_error else sys.stdout).write(final + "\n")
        return 1 if is_error else 0


# -- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> dict:
    opts: dict = {"positionals": [], "execute": False, "message": None, "stream": False}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-x", "--execute"):
            opts["execute"] = True
            if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                opts["message"] = argv[i + 1]
                i += 1
        elif arg.startswith("--execute="):
            opts["execute"], opts["message"] = True, arg.split("=", 1)[1]
        elif arg == "--stream-json":
            opts["stream"] = True
        elif arg in _BOOL_FLAGS:
            pass
        elif arg in _FLAGS_WITH_VALUE:
            if i + 1 >= len(argv):
                raise CliError(f"error: option '{arg}' argument missing")
            i += 1
        elif arg.split("=", 1)[0] in _FLAGS_WITH_VALUE and "=" in arg:
            pass
        elif arg in ("-h", "--help"):
            opts["help"] = True
        elif arg in ("-V", "--version"):
            opts["version"] = True
        elif arg.startswith("-") and arg != "-":
            raise CliError(f"error: unknown option '{arg}'")
        else:
            opts["positionals"].append(arg)
        i += 1
    if opts["stream"] and not opts["execute"]:
        raise CliError("error: --stream-json requires -x/--execute")
    return opts


def _read_message(opts: dict) -> str:
    if opts["message"] is not None:
        return opts["message"]
    return sys.stdin.read()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = parse_args(argv)
    except CliError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    if opts.get("help"):
        sys.stdout.write(USAGE)
        return 0
    if opts.get("version"):
        sys.stdout.write(VERSION + "\n")
        return 0
    pos = opts["positionals"]
    if not os.environ.get("AMP_API_KEY"):
        sys.stderr.write("Error: not logged in. Set AMP_API_KEY (the fake amp has no "
                         "interactive login).\n")
        return 1

    if pos[:2] == ["threads", "new"] and len(pos) == 2:
        thread = new_thread()
        sys.stdout.write(thread_url(thread["id"]) + "\n")
        return 0
    if pos[:2] == ["threads", "continue"]:
        if len(pos) != 3:
            sys.stderr.write("error: threads continue takes exactly one thread id\n")
            return 1
        thread_id = parse_thread_ref(pos[2])
        if thread_id is None:
            sys.stderr.write("Invalid thread URL or ID\n")
            return 1
        thread = load_thread(thread_id)
        if thread is None:
            sys.stderr.write(f"Error: thread {thread_id} not found\n")
            return 1
        if not opts["execute"]:
            sys.stderr.write("error: the fake amp only supports execute mode (-x)\n")
            return 1
        return Turn(thread, _read_message(opts), opts["stream"]).run()
    if pos and pos != ["-"]:
        sys.stderr.write(f"error: unknown command '{' '.join(pos)}'\n")
        return 1
    if not opts["execute"] and sys.stdin.isatty():
        sys.stderr.write("error: the fake amp has no interactive mode; use -x\n")
        return 1
    return Turn(new_thread(), _read_message(opts), opts["stream"]).run()


WRAPPER = """#!/bin/sh
# ampx fake amp: a scripted stand-in for the amp CLI (ampx/sandbox/fake_amp.py).
exec {python} {script} "$@"
"""


def install_fake_amp(bin_dir: str | os.PathLike[str], name: str = "amp") -> Path:
    """Write an executable ``amp`` into ``bin_dir`` that runs this stand-in; returns its path."""
    target = Path(bin_dir) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(WRAPPER.format(python=shlex.quote(sys.executable),
                                     script=shlex.quote(str(Path(__file__).resolve()))))
    target.chmod(0o755)
    return target


if __name__ == "__main__":
    sys.exit(main())
