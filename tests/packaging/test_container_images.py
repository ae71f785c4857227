"""The images, their build context, the kind cluster and the cluster quickstart.

No Docker engine exists here, so the Dockerfiles are read, not built: who they run as, that no
secret is baked in, that what they COPY is in the build context (.dockerignore applied the way
Docker applies it) and that the quickstart in docs/cluster-install.md matches the chart.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import ampx
import chartlib

ROOT = chartlib.ROOT
DOCKERFILES = {"operator": ROOT / "images" / "operator.Dockerfile",
               "worker": ROOT / "images" / "worker.Dockerfile"}
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
SECRET_FILE = re.compile(r"\.(pem|key|p12|pfx)$|(^|/)\.env$|id_rsa|id_ed25519")

# --- a small Dockerfile reader -----------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def read_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comment lines vanish, even inside a continuation
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path.name}: dangling line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert keyword == "ARG", f"{path.name}: {keyword} before FROM"
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, args.strip()))
    return global_args, stages


def key_values(keyword: str, args: str) -> dict[str, str]:
    """ENV/ARG/LABEL arguments as a mapping (both `K=V K2=V2` and the legacy `K V`)."""
    words = shlex.split(args)
    if keyword == "ENV" and len(words) >= 2 and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return {k: v for k, _, v in (w.partition("=") for w in words)}


# --- .dockerignore, as Docker (moby/patternmatcher) reads it -----------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            body = pattern[i + 1:end]
            out, i = out + "[" + ("^" + body[1:] if body.startswith("!") else body) + "]", end + 1
        elif pattern[i] == "\\":
            out, i = out + re.escape(pattern[i + 1]), i + 2
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(f"^{out}$")


def dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def in_context(relpath: str) -> bool:
    """Whether `docker build .` from the repository root sends this file to the builder: the last
    pattern matching the path, or one of its parent directories, decides."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, regex in dockerignore():
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return not excluded


# --- Dockerfiles -------------------------------------------------------------------------------


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_runs_as_non_root(image):
    _, stages = read_dockerfile(DOCKERFILES[image])
    final = stages[-1]
    users = final.all("USER")
    assert users, f"{image}: the final stage sets no USER (it would run as root)"
    uid, _, gid = users[-1].partition(":")
    assert uid == "10001" and gid in ("", "10001"), users[-1]
    # the user exists in the image with that uid
    runs = " ".join(final.all("RUN"))
    assert re.search(r"useradd\b[^&]*--uid 10001", runs), runs
    # nothing after the last USER switches back
    tail = final.instructions[[kw for kw, _ in final.instructions].index("USER"):]
    assert [a for kw, a in tail if kw == "USER"] == [users[-1]]


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_no_secret_is_baked_in(image):
    global_args, stages = read_dockerfile(DOCKERFILES[image])
    assigned = dict(global_args)
    for stage in stages:
        for keyword in ("ENV", "ARG"):
            for args in stage.all(keyword):
                assigned.update(key_values(keyword, args))
        for keyword in ("COPY", "ADD"):
            for args in stage.all(keyword):
                sources = [w for w in shlex.split(args) if not w.startswith("--")][:-1]
                assert not [s for s in sources if SECRET_FILE.search(s)], args
                assert not [s for s in sources if "://" in s], f"remote ADD: {args}"
        assert not stage.all("ADD"), "use COPY"
    for name, value in assigned.items():
        assert not (SECRET_NAME.search(name) and value), f"{image}: {name} has a baked-in value"


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_slim_python_base_and_ampx_entrypoint(image):
    _, stages = read_dockerfile(DOCKERFILES[image])
    final = stages[-1]
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", final.base), final.base
    build = next(s for s in stages if s.name == "build")
    assert build.base == final.base  # the venv is copied between them: same Python
    assert "pip install /src" in " ".join(build.all("RUN"))
    assert any(a.startswith("--from=build /opt/ampx /opt/ampx") for a in final.all("COPY"))
    assert final.all("ENTRYPOINT") == ['["ampx"]']
    env = {}
    for args in final.all("ENV"):
        env.update(key_values("ENV", args))
    assert env["PATH"].startswith("/opt/ampx/bin:")


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_copied_sources_are_in_the_build_context(image):
    _, stages = read_dockerfile(DOCKERFILES[image])
    for stage in stages:
        for args in stage.all("COPY"):
            if "--from=" in args:
                continue
            *sources, _ = [w for w in shlex.split(args) if not w.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), source
                assert in_context(source), f"{source} is excluded by .dockerignore"


def test_worker_image_pins_the_amp_cli():
    _, stages = read_dockerfile(DOCKERFILES["worker"])
    amp = next(s for s in stages if s.name == "amp")
    args = {}
    for a in amp.all("ARG"):
        args.update(key_values("ARG", a))
    # an exact version (these have a linux-x64 binary on npm), never a range or a dist-tag
    assert re.fullmatch(r"0\.0\.\d{10}-g[0-9a-f]{6,}", args["AMP_CLI_VERSION"])
    assert re.fullmatch(r"[0-9a-f]{64}", args["AMP_CLI_SHA256"])
    run = " ".join(amp.all("RUN"))
    assert '"@ampcode/cli@${AMP_CLI_VERSION}"' in run
    assert "sha256sum -c" in run
    final = stages[-1]
    assert "--from=amp /out/amp /usr/local/bin/amp" in final.all("COPY")
    assert re.search(r"apt-get install [^&]*\bgit\b", " ".join(final.all("RUN")))
    env = {}
    for a in final.all("ENV"):
        env.update(key_values("ENV", a))
    assert env["HOME"] == "/home/ampx"
    assert final.all("WORKDIR") == ["/workspace"]


def test_operator_image_exposes_the_liveness_port():
    _, stages = read_dockerfile(DOCKERFILES["operator"])
    final = stages[-1]
    assert final.all("EXPOSE") == ["8080"]
    container = chartlib.operator_container(chartlib.render({}))
    assert final.all("CMD") == [
        '["' + '", "'.join(container["args"][:3]) + '"]']  # same as the chart's command


# --- .dockerignore -----------------------------------------------------------------------------


def test_dockerignore_keeps_the_context_to_the_package():
    for path in (".git", ".git/config", ".venv", ".venv/bin/python", "tests",
                 "tests/packaging/chartlib.py", "ampx.egg-info/PKG-INFO", "charts/ampx/Chart.yaml",
                 "images/worker.Dockerfile", "benchmarks", ".pytest_cache",
                 "ampx/__pycache__/settings.cpython-311.pyc", "ampx/core/x.pyc", "history.db",
                 "ampx/history.db", "github-app.private-key.pem", "ampx/sandbox/app.pem", ".env"):
        assert not in_context(path), path
    for path in ("pyproject.toml", "README.md", "ampx/__init__.py", "ampx/core/models.py",
                 "ampx/sandbox/github-rest-subset.json"):
        assert in_context(path), path
    # every file the package ships (sources and package data) is in the context
    for path in (ROOT / "ampx").rglob("*"):
        rel = path.relative_to(ROOT).as_posix()
        if path.is_file() and "__pycache__" not in rel:
            assert in_context(rel), rel


def test_dockerignore_matcher():
    # the reader above follows Docker's rules; check it on the cases that matter
    assert _pattern_regex("**/__pycache__").match("__pycache__")
    assert _pattern_regex("**/__pycache__").match("a/b/__pycache__")
    assert _pattern_regex("*").match("tests") and not _pattern_regex("*").match("a/b")
    assert _pattern_regex("**/*.py[cod]").match("a/b.pyc")
    assert not _pattern_regex("**/*.py[cod]").match("a/b.py")


# --- kind ----------------------------------------------------------------------------------------


def test_kind_config_is_one_node():
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["nodes"] == [{"role": "control-plane"}]
    assert config["name"] == "ampx"


# --- the cluster quickstart ----------------------------------------------------------------------


def _quickstart() -> list[str]:
    text = (ROOT / "docs" / "cluster-install.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)[1]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_quickstart_matches_the_chart_and_images():
    lines = _quickstart()
    tag = next(re.fullmatch(r"TAG=(\S+)\s.*", line)[1] for line in lines if line.startswith("TAG="))
    assert tag == ampx.__version__

    assert "kind create cluster --config kind-config.yaml" in lines
    cluster = yaml.safe_load((ROOT / "kind-config.yaml").read_text())["name"]

    built = {}
    for line in lines:
        if line.startswith("docker build"):
            words = shlex.split(line)
            assert words[-1] == "."  # from the repository root
            built[words[words.index("-f") + 1]] = words[words.index("-t") + 1].replace("$TAG", tag)
    assert built == {"images/operator.Dockerfile": f"ampx-operator:{tag}",
                     "images/worker.Dockerfile": f"ampx-worker:{tag}"}
    load = next(shlex.split(line) for line in lines if line.startswith("kind load"))
    assert load[load.index("--name") + 1] == cluster
    assert {w.replace("$TAG", tag) for w in load[4:] if not w.startswith("-") and w != cluster} \
        == set(built.values())

    helm_install = next(shlex.split(line) for line in lines if line.startswith("helm install"))
    release, chart_path = helm_install[2], helm_install[3]
    namespace = helm_install[helm_install.index("--namespace") + 1]
    assert chart_path == "charts/ampx"
    values: dict = {}
    for i, word in enumerate(helm_install):
        if word in ("--set", "--set-string"):
            key, _, value = helm_install[i + 1].partition("=")
            node = values
            *parents, leaf = key.split(".")
            for k in parents:
                node = node.setdefault(k, {})
            node[leaf] = value
    chartlib.chart().validate_schema(chartlib.chart().merge_values(values))
    docs = chartlib.render(values, name=release, namespace=namespace)

    # the images the chart runs are the ones built and loaded
    container = chartlib.operator_container(docs)
    assert container["image"] == built["images/operator.Dockerfile"]
    assert chartlib.env_of(container)["AMPX_WORKER_IMAGE"] == built["images/worker.Dockerfile"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    # the namespace and Secrets it expects are the ones created
    assert f"kubectl create namespace {namespace}" in lines
    defaults = chartlib.chart().values
    app, amp = defaults["github"]["appSecret"], defaults["amp"]["secret"]
    assert any(line.startswith(f"kubectl -n {namespace} create secret generic {app['name']} "
                               f"--from-file={app['key']}=") for line in lines)
    assert any(line.startswith(f"kubectl -n {namespace} create secret generic {amp['name']} "
                               f"--from-literal={amp['key']}=") for line in lines)
    deployment = chartlib.one(docs, "Deployment")["metadata"]["name"]
    assert f"kubectl -n {namespace} rollout status deployment/{deployment}" in lines
    assert any(line.startswith("ampx start --repo ") for line in lines)
