"""The tamper guard's rules: protected paths, deleted or emptied tests, skip configuration."""

from __future__ import annotations

import pytest

from ampx.gitops.tamper import matches_glob, tamper_check, tamper_reason


def reader(files: dict[str, str]):
    return lambda path: files[path].encode() if path in files else None


@pytest.mark.parametrize("path", [".github/workflows/ci.yml", ".github/actions/setup/action.yml",
                                  ".github/CODEOWNERS", ".gitmodules"])
def test_default_protected_paths_are_tampering_whatever_the_change(path):
    for status in "AMD":
        assert tamper_check([(status, path)]) == [path]


def test_ordinary_changes_pass():
    assert tamper_check([("M", "calc.py"), ("A", "tests/test_new.py"), ("D", "docs/old.md"),
                         ("M", ".githubish/x"), ("A", "src/.github.py")]) == []


def test_policy_globs():
    assert matches_glob("deploy/prod/values.yaml", "deploy/**")
    assert matches_glob("deploy/prod/values.yaml", "deploy/")
    assert matches_glob("a/b/Makefile", "Makefile")
    assert matches_glob("Makefile", "Makefile")
    assert matches_glob("ci/run.sh", "ci/*.sh") and not matches_glob("ci/x/run.sh", "ci/*.sh")
    assert not matches_glob("src/deploy/x", "/deploy/**")
    assert tamper_check([("M", "scripts/release.sh")], protected=["scripts/release.sh"]) \
        == ["scripts/release.sh"]
    assert tamper_check([("M", "scripts/other.sh")], protected=["scripts/release.sh"]) == []


def test_deleted_and_emptied_tests():
    old = {"tests/test_calc.py": "def test_add():\n    assert add(1, 2) == 3\n"}
    emptied = {"tests/test_calc.py": "# nothing to see\n\n"}
    assert tamper_check([("D", "tests/test_calc.py")]) == ["tests/test_calc.py"]
    assert tamper_check([("M", "tests/test_calc.py")], reader(emptied), reader(old)) \
        == ["tests/test_calc.py"]
    edited = {"tests/test_calc.py": "def test_add():\n    assert add(2, 2) == 4\n"}
    assert tamper_check([("M", "tests/test_calc.py")], reader(edited), reader(old)) == []
    assert tamper_check([("A", "tests/__init__.py")], reader({"tests/__init__.py": ""}),
                        reader({})) == [], "a new empty file in a test directory is fine"


@pytest.mark.parametrize("path,old,new", [
    ("conftest.py", "import pytest\n", "import pytest\ncollect_ignore = ['test_calc.py']\n"),
    ("tests/conftest.py", "", "def pytest_collection_modifyitems(config, items):\n    items[:] = []\n"),
    ("conftest.py", "", "import pytest\npytest.skip('no', allow_module_level=True)\n"),
    ("pytest.ini", "[pytest]\naddopts = -q\n", "[pytest]\naddopts = -q --ignore=tests\n"),
    ("setup.cfg", "[tool:pytest]\n", "[tool:pytest]\naddopts = -k 'not slow'\n"),
    ("pyproject.toml", "[tool.pytest.ini_options]\n",
     "[tool.pytest.ini_options]\naddopts = [\"--deselect\", \"tests/test_calc.py::test_add\"]\n"),
    ("tox.ini", "[testenv]\ncommands = pytest\n", "[testenv]\ncommands = pytest -m smoke\n"),
    ("pytest.ini", "[pytest]\n", "[pytest]\nnorecursedirs = tests\n"),
    ("package.json", '{"jest": {}}\n', '{"jest": {"testPathIgnorePatterns": ["calc"]}}\n'),
    ("jest.config.js", "module.exports = {};\n", "module.exports = {testMatch: ['nothing']};\n"),
    ("vitest.config.ts", "export default {test: {}}\n", "export default {test: {exclude: ['**']}}\n"),
    ("tests/test_calc.py", "def test_add():\n    pass\n",
     "import pytest\n@pytest.mark.skip\ndef test_add():\n    pass\n"),
    ("src/calc.test.js", "it('adds', () => {})\n", "it.skip('adds', () => {})\n"),
])
def test_configuration_that_skips_tests_is_tampering(path, old, new):
    status = "M" if old else "A"
    assert tamper_reason(status, path, reader({path: new}), reader({path: old} if old else {})) \
        == "skips tests"


def test_configuration_that_already_skipped_or_changes_elsewhere_passes():
    old = "[pytest]\naddopts = --ignore=vendor\n"
    new = "[pytest]\naddopts = --ignore=vendor\nlog_level = INFO\n"
    assert tamper_check([("M", "pytest.ini")], reader({"pytest.ini": new}),
                        reader({"pytest.ini": old})) == []
    assert tamper_check([("M", "package.json")], reader({"package.json": '{"name": "x2"}'}),
                        reader({"package.json": '{"name": "x"}'})) == []
    new_test = "import pytest\n@pytest.mark.skip\ndef test_later():\n    pass\n"
    assert tamper_check([("A", "tests/test_new.py")], reader({"tests/test_new.py": new_test}),
                        reader({})) == [], "a skip in a new test file disables no existing test"


def test_without_contents_only_the_path_rules_apply():
    assert tamper_check([("A", "conftest.py"), ("M", "pytest.ini")]) == []
