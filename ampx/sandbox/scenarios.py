"""The six task stories of `ampx demo` and the end-to-end tests.

Each prompt carries `@fake` directives for the scripted agent (see `ampx.sandbox.fake_amp`): the
edits it makes, and rules it applies only when a later prompt contains a given text. That is how
"red then green" proves the CI excerpt reached the agent: the fix is written only when the
agent's next prompt contains the assertion message from the CI log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .world import CALC, DEMO_REPO, PR_ONLY_REPO


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def calc_with(*functions: str) -> str:
    return CALC + "".join("\n\n" + f.strip() + "\n" for f in functions)


def unit_test_file(name: str, call: str, expected: str) -> str:
    return (f"import unittest\n\nfrom calc import {name}\n\n\n"
            f"class {name.title()}Test(unittest.TestCase):\n"
            f"    def test_{name}(self):\n        self.assertEqual({call}, {expected})\n\n\n"
            "if __name__ == \"__main__\":\n    unittest.main()\n")


def write(path: str, text: str) -> str:
    return f"@fake write {path} {_esc(text)}"


MULTIPLY = "def multiply(a, b):\n    return a * b"
DIVIDE_BUG = "def divide(a, b):\n    return a * b"
DIVIDE_OK = "def divide(a, b):\n    return a / b"
POWER_BUG = "def power(a, b):\n    return a * b"
SUBTRACT_BUG = "def subtract(a, b):\n    return a + b"
SUBTRACT_OK = "def subtract(a, b):\n    return a - b"
MODULO_BUG = "def modulo(a, b):\n    return a // b"
MODULO_OK = "def modulo(a, b):\n    return a % b"


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    prompt: str
    expect_phase: str
    expect_attempts: int
    max_attempts: int = 3
    abort_when_running: bool = False
    continue_with: Optional[str] = None  # sent when the task reaches needs_review
    merge: bool = False  # merge the PR once green
    expect_pr: Optional[str] = None  # "open" | "merged" | None (no PR)
    notes: list[str] = field(default_factory=list)
    repo: str = DEMO_REPO  # PR_ONLY_REPO: CI runs on pull requests only


def scenarios() -> list[Scenario]:
    return [
        Scenario(
            key="green",
            title="Add multiply",
            prompt="Add a multiply function to calc.py, with a unit test.\n"
                   + write("calc.py", calc_with(MULTIPLY)) + "\n"
                   + write("test_multiply.py", unit_test_file("multiply", "multiply(3, 4)", "12")),
            expect_phase="success", expect_attempts=1, expect_pr="open",
        ),
        Scenario(
            key="red-then-green",
            title="Add divide",
            prompt="Add a divide function to calc.py, with a unit test.\n"
                   + write("calc.py", calc_with(DIVIDE_BUG)) + "\n"
                   + write("test_divide.py", unit_test_file("divide", "divide(6, 3)", "2")) + "\n"
                   + '@fake when "AssertionError: 18 != 2" '
                   + write("calc.py", calc_with(DIVIDE_OK)).removeprefix("@fake "),
            expect_phase="success", expect_attempts=2, expect_pr="open",
        ),
        Scenario(
            key="never-green",
            title="Add power",
            prompt="Add a power function to calc.py, with a unit test.\n"
                   + write("calc.py", calc_with(POWER_BUG)) + "\n"
                   + write("test_power.py", unit_test_file("power", "power(2, 3)", "8")) + "\n"
                   + '@fake when "CI failed" append calc.py \\n# tried again\\n',
            expect_phase="needs_review", expect_attempts=2,
        ),
        Scenario(
            key="aborted",
            title="Refactor everything",
            prompt="Refactor the whole project.\n@fake sleep 120\n"
                   + write("calc.py", calc_with("def noop():\n    return None")),
            expect_phase="aborted", expect_attempts=1, abort_when_running=True,
        ),
        Scenario(
            key="continued-merged",
            title="Add subtract",
            prompt="Add a subtract function to calc.py, with a unit test.\n"
                   + write("calc.py", calc_with(SUBTRACT_BUG)) + "\n"
                   + write("test_subtract.py", unit_test_file("subtract", "subtract(5, 3)", "2")),
            max_attempts=1,
            continue_with="subtract must return a - b.\n" + write("calc.py", calc_with(SUBTRACT_OK)),
            merge=True,
            expect_phase="success", expect_attempts=2, expect_pr="merged",
        ),
        Scenario(
            key="pr-only-ci",
            title="Add modulo",
            prompt="Add a modulo function to calc.py, with a unit test.\n"
                   + write("calc.py", calc_with(MODULO_BUG)) + "\n"
                   + write("test_modulo.py", unit_test_file("modulo", "modulo(7, 3)", "1")) + "\n"
                   + '@fake when "AssertionError: 2 != 1" '
                   + write("calc.py", calc_with(MODULO_OK)).removeprefix("@fake "),
            expect_phase="success", expect_attempts=2, expect_pr="open",
            repo=PR_ONLY_REPO,
        ),
    ]
