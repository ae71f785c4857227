"""Repository specs, remote URLs, commit messages and the tamper guard's path rules."""

from __future__ import annotations

import pytest

from ampx.gitops import (
    PushRejected,
    PushTransportError,
    RepoSpec,
    RepoSpecError,
    add_trailers,
    attempt_message,
    classify_push_failure,
    commit_title,
    is_test_file,
    parse_repo_spec,
    remote_url,
    tamper_check,
)


@pytest.mark.parametrize("spec", [
    "git@github.com:octo/demo.git", "git@github.com:octo/demo", "https://github.com/octo/demo",
    "https://github.com/octo/demo.git", "https://github.com/octo/demo/", "octo/demo",
    "ssh://git@github.com/octo/demo.git", "  octo/demo.git ",
])
def test_accepted_specs(spec):
    parsed = parse_repo_spec(spec)
    assert (parsed.owner, parsed.name, parsed.full_name) == ("octo", "demo", "octo/demo")


def test_spec_keeps_dots_and_host():
    assert parse_repo_spec("git@ghe.corp:team/my.repo.git") == RepoSpec("team", "my.repo", "ghe.corp")


@pytest.mark.parametrize("spec", [
    "", "demo", "octo/demo/extra", "https://github.com/octo", "ftp://github.com/o/r",
    "https://user:pw@github.com/o/r", "git@github.com:o/..", "-o/r", "o/r r", "o/-r", "o/.",
    "o/..git",
])
def test_rejected_specs(spec):
    with pytest.raises(RepoSpecError, match="not a repository"):
        parse_repo_spec(spec)


def test_remote_urls(tmp_path):
    assert remote_url("https://github.com", "o/r") == "https://github.com/o/r.git"
    assert remote_url("http://127.0.0.1:8080/", parse_repo_spec("o/r")) == "http://127.0.0.1:8080/o/r.git"
    assert remote_url(f"file://{tmp_path}", "o/r") == f"file://{tmp_path}/o/r.git"
    assert remote_url(str(tmp_path), "o/r") == f"file://{tmp_path}/o/r.git"
    with pytest.raises(RepoSpecError, match="credentials"):
        remote_url("https://x-access-token:abc@github.com", "o/r")
    with pytest.raises(RepoSpecError):
        remote_url("ssh://github.com", "o/r")


def test_commit_messages():
    assert commit_title("  Fix   the adder \n\nmore text") == "Fix the adder"
    assert len(commit_title("x" * 200)) == 60 and commit_title("\n\n") == "task"
    assert attempt_message("Fix", 2, "01j") == "ampx: Fix (attempt 2)\n\nAmpx-Task: 01j\n"
    assert attempt_message("Fix", 3, "01j", interrupted=True).startswith(
        "ampx: WIP Fix (attempt 3, interrupted)\n\n")
    both = add_trailers(attempt_message("Fix", 1, "01j"), {"Ampx-Attempt": "1"})
    assert both == "ampx: Fix (attempt 1)\n\nAmpx-Task: 01j\nAmpx-Attempt: 1\n"
    assert add_trailers("subject\n\nbody text.", {"K": "v"}) == "subject\n\nbody text.\n\nK: v\n"


@pytest.mark.parametrize("path", [
    "tests/test_calc.py", "test_calc.py", "pkg/calc_test.py", "tests/fixtures/data.json",
    "src/__tests__/a.js", "web/app.test.ts", "web/app.spec.tsx", "cmd/main_test.go",
    "spec/models/user_spec.rb", "src/test/java/FooTest.java", "conftest.py",
])
def test_test_files(path):
    assert is_test_file(path)


@pytest.mark.parametrize("path", ["calc.py", "src/testing_utils.py", "latest.py", "contest.py",
                                  "docs/attest.md"])
def test_not_test_files(path):
    assert not is_test_file(path)


def test_tamper_check_rules():
    changes = [
        ("M", ".github/workflows/ci.yml"), ("A", ".github/workflows/new.yml"),
        ("D", ".github/workflows/old.yaml"), ("M", ".github/CODEOWNERS"),
        ("D", "tests/test_calc.py"), ("M", "tests/test_other.py"), ("A", "tests/test_new.py"),
        ("D", "web/a.spec.ts"), ("D", "calc.py"), ("M", "src/app.py"),
    ]
    assert tamper_check(changes) == [  # all of .github/ is protected, not only workflows
        ".github/CODEOWNERS", ".github/workflows/ci.yml", ".github/workflows/new.yml",
        ".github/workflows/old.yaml", "tests/test_calc.py", "web/a.spec.ts",
    ]
    assert tamper_check([]) == []


@pytest.mark.parametrize("stdout,stderr,cls,reason", [
    ("To x\n!\tHEAD:refs/heads/b\t[rejected] (stale info)\nDone\n", "", PushRejected, "stale"),
    ("To x\n!\tHEAD:refs/heads/b\t[rejected] (fetch first)\nDone\n", "", PushRejected, "non-fast-forward"),
    ("To x\n!\tHEAD:refs/heads/b\t[remote rejected] (pre-receive hook declined)\n", "", PushRejected, "remote-rejected"),
    ("To x\n!\tHEAD:refs/heads/b\t[remote rejected] (permission denied)\n", "", PushRejected, "permission"),
    ("", "remote: Permission to o/r.git denied to bot.\nfatal: unable to access 'https://github.com/o/r.git/': The requested URL returned error: 403", PushRejected, "permission"),
    ("", "fatal: Authentication failed for 'https://github.com/o/r.git/'", PushRejected, "auth"),
    ("", "remote: Repository not found.\nfatal: repository 'https://github.com/o/r.git/' not found", PushRejected, "not-found"),
    ("", "fatal: unable to access 'https://github.com/o/r.git/': Could not resolve host: github.com", PushTransportError, "transport"),
    ("", "error: RPC failed; curl 92 HTTP/2 stream 0 was not closed cleanly\nfatal: the remote end hung up unexpectedly", PushTransportError, "transport"),
])
def test_push_failure_classes(stdout, stderr, cls, reason):
    error = classify_push_failure(stdout, stderr, 1)
    assert type(error) is cls and error.reason == reason
