"""The CRD is generated from the models; what it rejects, the models reject too."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from ampx.core.crd import build_crd, render_crd
from ampx.core.ids import IdError, default_branch, new_task_id, resolve_prefix, slugify
from ampx.core.models import AmpTaskSpec, AmpTaskStatus
from ampx.core.repo import parse_repo

ROOT = Path(__file__).resolve().parents[2]


def test_committed_crd_is_the_generated_one():
    committed = (ROOT / "crds" / "amptask.yaml").read_text()
    assert committed == render_crd(), "run: python -m ampx.core.crd > crds/amptask.yaml"


def test_crd_shape():
    crd = build_crd()
    v = crd["spec"]["versions"][0]
    assert crd["metadata"]["name"] == "amptasks.ampx.dev"
    assert crd["spec"]["names"]["shortNames"] == ["at"]
    assert crd["spec"]["scope"] == "Namespaced"
    assert v["subresources"] == {"status": {}}
    cols = [c["name"] for c in v["additionalPrinterColumns"] if "priority" not in c]
    assert cols == ["Phase", "Attempts", "Repo", "Branch", "PR", "Age"]

    def walk(node):
        assert "$ref" not in node and "anyOf" not in node and "title" not in node
        for k in ("properties",):
            for child in node.get(k, {}).values():
                walk(child)
        for k in ("items", "additionalProperties"):
            if isinstance(node.get(k), dict):
                walk(node[k])

    walk(v["schema"]["openAPIV3Schema"])


def _spec_schema():
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _k8s_validate(schema, instance):
    """jsonschema with Kubernetes' `nullable` meaning (null allowed)."""

    def allow_null(node):
        if isinstance(node, dict):
            node = {k: allow_null(v) for k, v in node.items()}
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
        return node

    jsonschema.validate(instance, allow_null(schema))


GOOD = [
    {"repo": "acme/api", "prompt": "x"},
    {"repo": "git@github.com:acme/api.git", "prompt": "Migrate", "maxAttempts": 20},
    {"repo": "https://github.com/acme/api", "prompt": "x", "branch": "amp/x-01abcd",
     "policy": {"mergeMethod": "rebase"}, "limits": {"attemptTimeoutMinutes": 5}},
    {"repo": "https://ghe.example.com:8443/acme/api.git", "prompt": "x"},
]
BAD = [
    {"repo": "acme", "prompt": "x"},
    {"repo": "ftp://github.com/acme/api", "prompt": "x"},
    {"repo": "acme/api", "prompt": ""},
    {"repo": "acme/api", "prompt": "x" * 40000},
    {"repo": "acme/api", "prompt": "x", "maxAttempts": 0},
    {"repo": "acme/api", "prompt": "x", "maxAttempts": 21},
    {"repo": "acme/api", "prompt": "x", "policy": {"mergeMethod": "octopus"}},
    {"repo": "acme/api", "prompt": "x", "branch": "-rf"},
    {"prompt": "x"},
    # what kubectl could once create and the operator then choked on
    {"repo": "acme/api", "prompt": "   \n\t"},
    {"repo": "acme/api", "prompt": "x", "branch": "amp/a..b"},
    {"repo": "acme/api", "prompt": "x", "branch": "amp//x"},
    {"repo": "acme/api", "prompt": "x", "branch": "amp/.hidden"},
    {"repo": "acme/api", "prompt": "x", "branch": "amp/x/"},
    {"repo": "acme/api", "prompt": "x", "baseBranch": "release."},
]


@pytest.mark.parametrize("spec", GOOD)
def test_good_specs_pass_both(spec):
    _k8s_validate(_spec_schema(), spec)
    AmpTaskSpec.model_validate(spec)


@pytest.mark.parametrize("spec", BAD)
def test_bad_specs_fail_both(spec):
    with pytest.raises(jsonschema.ValidationError):
        _k8s_validate(_spec_schema(), spec)
    with pytest.raises(ValidationError):
        AmpTaskSpec.model_validate(spec)


@pytest.mark.parametrize("branch", ["amp/a..b", "amp//x", "amp/x.lock", "amp/.hidden", "amp/x/",
                                    "amp/x.lock/y"])
def test_branch_names_git_refuses_are_refused(branch):
    with pytest.raises(ValidationError) as err:
        AmpTaskSpec(repo="a/b", prompt="x", branch=branch)
    assert "should match pattern" not in str(err.value), "the reason, not the regex"


def test_the_lock_rule_no_pattern_can_say_is_a_cel_rule_in_the_crd():
    spec = _spec_schema()["properties"]
    for field in ("branch", "baseBranch"):
        (rule,) = [r for r in spec[field]["x-kubernetes-validations"] if ".lock" in r["rule"]]
        assert rule["message"]


@pytest.mark.parametrize("branch", ["main", "amp/fix-it-01abcd", "release/v1.2.3", "a_b-c/d.e"])
def test_ordinary_branch_names_pass_both(branch):
    _k8s_validate(_spec_schema(), {"repo": "a/b", "prompt": "x", "branch": branch})
    AmpTaskSpec(repo="a/b", prompt="x", branch=branch)


def test_status_round_trips_through_the_wire_form():
    st = AmpTaskStatus.model_validate({"phase": "running", "stage": "ci", "attempts": 2,
                                       "ciRunId": 5, "history": [{"number": 1, "prompt": "p"}],
                                       "reports": {"1": {"outcome": "pushed", "commit": "abc"}}})
    wire = st.wire()
    assert wire["ciRunId"] == 5 and wire["reports"]["1"]["outcome"] == "pushed"
    assert AmpTaskStatus.model_validate(wire) == st
    _k8s_validate(build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
                  ["status"], wire)


def test_ids_and_branches():
    tid = new_task_id()
    assert tid == tid.lower() and len(tid) == 26
    assert slugify("Migrate Mocha tests to Vitest!") == "migrate-mocha-tests-to-vitest"
    assert slugify("Ünïcode ✓ only") == "unicode-only"
    assert slugify("???") == "task"
    b = default_branch("Migrate Mocha tests to Vitest", "01HYZ3ABCDEF")
    assert b == "amp/migrate-mocha-tests-to-vitest-01hyz3abcdef"
    AmpTaskSpec(repo="a/b", prompt="x", branch=b)
    assert len(slugify("word " * 50)) <= 40


def test_resolve_prefix_like_git():
    ids = ["01aaa1", "01aab2", "01bbb3"]
    assert resolve_prefix("01B", ids) == "01bbb3"
    assert resolve_prefix("01AAA1", ids) == "01aaa1"
    with pytest.raises(IdError, match="ambiguous"):
        resolve_prefix("01aa", ids)
    with pytest.raises(IdError, match="no task matches"):
        resolve_prefix("zz", ids)


@pytest.mark.parametrize("text,expected", [
    ("git@github.com:acme/api.git", ("acme", "api")),
    ("https://github.com/acme/api", ("acme", "api")),
    ("https://github.com/acme/api.git", ("acme", "api")),
    ("acme/my.repo", ("acme", "my.repo")),
])
def test_parse_repo(text, expected):
    assert tuple(parse_repo(text)) == expected


@pytest.mark.parametrize("text", ["acme", "ftp://github.com/a/b", "a/b/c", ""])
def test_parse_repo_rejects(text):
    with pytest.raises(ValueError, match="not a GitHub repository"):
        parse_repo(text)
