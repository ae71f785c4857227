"""GitHub Actions job logs written for the excerpt's tests and benchmark (no copied logs).

Each :class:`Case` is one red CI: its failed jobs (raw log in GitHub's format - BOM, seven-digit
timestamps, ``##[group]Run <command>`` step headers, post-job lines - and the jobs API's
steps) and the lines a person needs to see to fix it (``required``), plus lines that must not
take their place (``forbidden``). The test runners' output follows their real formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

TS = "2026-11-25T10:{:02d}:{:02d}.{:07d}Z "


def gh_log(lines: list[str]) -> str:
    """Lines -> GitHub's raw job log: BOM, one timestamp per line, CRLF-free."""
    out = ["\ufeff"]
    for i, line in enumerate(lines):
        out.append(TS.format((i // 60) % 60, i % 60, 1000000 + (i * 7919) % 9000000) + line + "\n")
    return "".join(out)


SETUP = [
    "Current runner version: '2.321.0'",
    "##[group]Operating System",
    "Ubuntu",
    "24.04.1",
    "LTS",
    "##[endgroup]",
    "##[group]Runner Image",
    "Image: ubuntu-24.04",
    "Version: 20241117.1.0",
    "##[endgroup]",
    "##[group]GITHUB_TOKEN Permissions",
    "Contents: read",
    "Metadata: read",
    "##[endgroup]",
    "Secret source: Actions",
    "Prepare workflow directory",
    "Prepare all required actions",
    "Getting action download info",
    "Download action repository 'actions/checkout@v4' (SHA:11bd71901bbe5b1630ceea73d27597364c9af683)",
    "Complete job name: test",
]
CHECKOUT = [
    "##[group]Run actions/checkout@v4",
    "with:",
    "  repository: acme/widgets",
    "  token: ***",
    "##[endgroup]",
    "Syncing repository: acme/widgets",
    "##[group]Getting Git version info",
    "Working directory is '/home/runner/work/widgets/widgets'",
    "[command]/usr/bin/git version",
    "git version 2.47.1",
    "##[endgroup]",
    "[command]/usr/bin/git checkout --progress --force -B amp/fix-tax refs/remotes/origin/amp/fix-tax",
    "Switched to a new branch 'amp/fix-tax'",
    "1f2e3d4c5b6a7988a1b2c3d4e5f60718293a4b5c",
]
POST = [
    "Post job cleanup.",
    "[command]/usr/bin/git version",
    "git version 2.47.1",
    "Cleaning up orphan processes",
]


def run_step(cmd: str, out: list[str], shell: str = "/usr/bin/bash -e {0}") -> list[str]:
    """A ``run:`` step as the log shows it, whatever the step's ``name:``."""
    script = cmd.splitlines()
    return (
        [f"##[group]Run {script[0]}"] + [f"\x1b[36;1m{s}\x1b[0m" for s in script]
        + [f"shell: {shell}", "env:", "  pythonLocation: /opt/hostedtoolcache/Python/3.12.7/x64",
           "##[endgroup]"] + out
    )


def job_log(*steps: list[str], post: bool = True) -> str:
    lines = SETUP + CHECKOUT
    for s in steps:
        lines += s
    return gh_log(lines + (POST if post else []))


EXIT1 = "##[error]Process completed with exit code 1."


def api_steps(*names_and_conclusions: tuple[str, str]) -> list[dict]:
    """The jobs API's ``steps`` of a job whose steps are checkout + the given ones."""
    steps = [("Set up job", "success"), ("Run actions/checkout@v4", "success"), *names_and_conclusions]
    steps += [("Post Run actions/checkout@v4", "success"), ("Complete job", "success")]
    return [{"name": n, "number": i + 1, "status": "completed", "conclusion": c}
            for i, (n, c) in enumerate(steps)]


@dataclass
class Job:
    name: str
    log: str
    steps: list[dict] = field(default_factory=list)

    @property
    def failed_step(self) -> Optional[str]:
        failed = [s["name"] for s in self.steps if s["conclusion"] in ("failure", "timed_out", "cancelled")]
        return failed[-1] if failed else None


@dataclass
class Case:
    name: str
    jobs: list[Job]
    required: list[str]
    forbidden: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=lambda: ["lint", "build"])


# ----------------------------------------------------------------------------- pytest


def pytest_out(test="test_convert", detail=("E       AssertionError: assert 'EUR' == 'USD'",
                                           "E         - USD", "E         + EUR"),
               where="tests/test_money.py:41: AssertionError", tmp="/tmp/pytest-of-runner/pytest-0",
               noise: Optional[list[str]] = None) -> list[str]:
    return [
        "\x1b[1m============================= test session starts ==============================\x1b[0m",
        "platform linux -- Python 3.12.7, pytest-8.3.3, pluggy-1.5.0",
        "rootdir: /home/runner/work/widgets/widgets",
        "configfile: pyproject.toml",
        "collected 214 items",
        "",
        *(noise or []),
        "tests/test_errors.py \x1b[32m........\x1b[0m                                          [  3%]",
        "tests/test_money.py \x1b[32m.....\x1b[0m\x1b[31mF\x1b[0m\x1b[32m...\x1b[0m                  [  7%]",
        "tests/test_zz.py \x1b[32m" + "." * 50 + "\x1b[0m  [100%]",
        "",
        "=================================== FAILURES ===================================",
        f"\x1b[31m\x1b[1m_________________________________ {test} _________________________________\x1b[0m",
        "",
        f"tmp_path = PosixPath('{tmp}/{test}0')",
        "",
        f"    def {test}(tmp_path):",
        "        rates = load_rates(tmp_path / 'rates.json')",
        ">       assert convert(10, 'EUR', rates).currency == 'USD'",
        *detail,
        "",
        where,
        "=============================== warnings summary ===============================",
        "tests/test_money.py::test_round",
        "  /home/runner/work/widgets/widgets/widgets/money.py:12: DeprecationWarning: use Decimal",
        "    return round(x, 2)",
        "",
        "-- Docs: https://docs.pytest.org/en/stable/how-to/capture-warnings.html",
        "=========================== short test summary info ============================",
        f"FAILED tests/test_money.py::{test} - AssertionError: assert 'EUR' == 'USD'",
        "\x1b[31m============== \x1b[31m\x1b[1m1 failed\x1b[0m, \x1b[32m213 passed\x1b[0m, \x1b[33m1 warning\x1b[0m\x1b[31m in 4.37s\x1b[0m\x1b[31m ==============\x1b[0m",
        EXIT1,
    ]


PYTEST_REQUIRED = ["E       AssertionError: assert 'EUR' == 'USD'", "tests/test_money.py:41: AssertionError",
                   "FAILED tests/test_money.py::test_convert"]


def case_pytest() -> Case:
    log = job_log(run_step("pip install -e '.[test]'", ["Successfully installed widgets-1.4.0"]),
                  run_step("pytest -q", pytest_out()))
    return Case("pytest", [Job("test", log, api_steps(("Run pip install -e '.[test]'", "success"),
                                                       ("Run pytest -q", "failure")))], PYTEST_REQUIRED)


def case_crowding() -> Case:
    """150 benign "transient error" lines and earlier error-looking output before the failure."""
    noise = []
    for i in range(150):
        noise.append(f"WARNING  urllib3.connectionpool:connectionpool.py:870 Retrying (Retry(total=2)) after "
                     f"connection broken by 'NewConnectionError: transient error, connection refused': /simple/pkg{i}/")
    noise += [f"tests/test_logging.py::test_error_level_{i} PASSED" for i in range(40)]
    log = job_log(run_step("pytest -q -p no:randomly", pytest_out(noise=noise)))
    return Case("pytest-crowded", [Job("test", log, api_steps(("Unit tests", "failure")))], PYTEST_REQUIRED,
                forbidden=[])


# ----------------------------------------------------------------------------- go


def go_verbose(passing: int = 300, failing_at: Optional[int] = None) -> list[str]:
    """go test -v: passing tests print x_test.go:N: lines (some with error words)."""
    out = ["go: downloading github.com/stretchr/testify v1.9.0"]
    failing_at = passing // 2 if failing_at is None else failing_at
    for i in range(passing):
        if i == failing_at:
            out += [
                "=== RUN   TestParseConfig",
                "=== RUN   TestParseConfig/empty_file",
                "    config_test.go:57: ParseConfig(\"\") error = <nil>, want error",
                "    config_test.go:58: got config {Port:0 Host:}, want zero value and an error",
                "=== RUN   TestParseConfig/valid",
                "--- FAIL: TestParseConfig (0.00s)",
                "    --- FAIL: TestParseConfig/empty_file (0.00s)",
                "    --- PASS: TestParseConfig/valid (0.00s)",
            ]
        out += [
            f"=== RUN   TestHandler{i}",
            f"    handler_test.go:{80 + i % 40}: request {i}: got error as expected: dial tcp 127.0.0.1:{9000 + i}: connect: connection refused",
            f"    handler_test.go:{120 + i % 40}: retrying after error: EOF (attempt 2)",
            f"--- PASS: TestHandler{i} (0.0{i % 10}s)",
        ]
    return out


GO_REQUIRED = ['config_test.go:57: ParseConfig("") error = <nil>, want error', "--- FAIL: TestParseConfig",
               "FAIL\tgithub.com/acme/svc/config"]


def case_go_verbose(passing: int = 300) -> Case:
    out = go_verbose(passing) + ["FAIL", "FAIL\tgithub.com/acme/svc/config\t0.412s",
                                 "ok  \tgithub.com/acme/svc/server\t1.093s", "FAIL", EXIT1]
    log = job_log(run_step("go test -v -race ./...", out, shell="/usr/bin/bash -e {0}"))
    return Case("go-verbose", [Job("go", log, api_steps(("Test", "failure")))], GO_REQUIRED,
                forbidden=["handler_test.go:80: request 0"])


def case_go_large(megabytes: float = 10.0) -> Case:
    """go test -v ./... whose failing package prints first, then megabytes of passing ones
    (more than the 8 MiB an old reader kept), then the summary."""
    head = go_verbose(20, failing_at=3) + ["FAIL", "FAIL\tgithub.com/acme/svc/config\t0.412s"]
    filler: list[str] = []
    size, target, i = 0, megabytes * (1 << 20), 0
    while size < target:
        pair = [f"=== RUN   TestStore{i}", f"--- PASS: TestStore{i} (0.00s) store_test.go ok {'.' * 40}"]
        filler += pair
        size += sum(len(p) for p in pair) + 2 * len("2026-11-25T10:00:00.1234567Z \n")
        i += 1
    out = head + filler + [f"ok  \tgithub.com/acme/svc/store\t{len(filler) // 900}.1s", "FAIL", EXIT1]
    log = job_log(run_step("go test -v ./...", out))
    return Case(f"go-large-{megabytes:g}MB", [Job("go", log, api_steps(("Run go test -v ./...", "failure")))],
                GO_REQUIRED + ["step: Run go test -v ./..."])


# ----------------------------------------------------------------------------- Rust


def case_cargo() -> Case:
    frames = []
    for i, fn in enumerate(["rust_begin_unwind", "core::panicking::panic_fmt", "core::panicking::assert_failed_inner",
                            "core::panicking::assert_failed", "widgets::tests::parses_header",
                            "widgets::tests::parses_header::{{closure}}", "core::ops::function::FnOnce::call_once",
                            "test::__rust_begin_short_backtrace", "test::run_test::{{closure}}",
                            "std::panicking::try::do_call", "std::panicking::try", "std::panic::catch_unwind",
                            "test::run_test_in_process", "std::sys::backtrace::__rust_begin_short_backtrace",
                            "core::ops::function::FnOnce::call_once{{vtable.shim}}", "std::sys::pal::unix::thread::Thread::new::thread_start",
                            "start_thread", "clone3"] * 2):
        frames.append(f"  {i:3d}: {fn}")
        frames.append(f"             at /rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/panicking.rs:{70 + i}:14")
    out = [
        "   Compiling widgets v0.3.1 (/home/runner/work/widgets/widgets)",
        "warning: unused variable: `len`",
        "  --> src/lib.rs:40:9",
        "   |",
        "40 |     let len = buf.len();",
        "   |         ^^^ help: if this is intentional, prefix it with an underscore: `_len`",
        "",
        "    Finished `test` profile [unoptimized + debuginfo] target(s) in 14.21s",
        "     Running unittests src/lib.rs (target/debug/deps/widgets-3f9c2a1b7d8e6f50)",
        "",
        "running 24 tests",
        "test tests::encodes_empty ... ok",
        "test tests::parses_header ... FAILED",
        "test tests::parses_body ... ok",
        "",
        "failures:",
        "",
        "---- tests::parses_header stdout ----",
        "",
        "thread 'tests::parses_header' panicked at src/lib.rs:88:9:",
        "assertion `left == right` failed: header length",
        "  left: 3",
        " right: 4",
        "stack backtrace:",
        *frames,
        "note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.",
        "",
        "",
        "failures:",
        "    tests::parses_header",
        "",
        "test result: FAILED. 23 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.04s",
        "",
        "error: test failed, to rerun pass `--lib`",
        EXIT1,
    ]
    log = job_log(run_step("cargo test --all-features", out))
    return Case("cargo", [Job("rust", log, api_steps(("Run cargo test --all-features", "failure")))],
                ["thread 'tests::parses_header' panicked at src/lib.rs:88:9:",
                 "assertion `left == right` failed: header length", "  left: 3", " right: 4",
                 "test result: FAILED. 23 passed; 1 failed"])


# ----------------------------------------------------------------------------- JavaScript


def case_jest() -> Case:
    suites = []
    for i in range(60):
        suites += [f"PASS src/components/widget{i}.test.tsx ({1 + i % 3}.{i % 10}12 s)"]
    out = [
        "> shop@2.1.0 test",
        "> jest --ci --coverage=false",
        "",
        *suites[:30],
        "FAIL src/cart/cart.test.ts",
        "  ● Cart › applies the discount before tax",
        "",
        "    expect(received).toBe(expected) // Object.is equality",
        "",
        "    Expected: 90",
        "    Received: 100",
        "",
        "      21 |     const cart = new Cart([{ sku: 'pen', price: 100 }]);",
        "      22 |     cart.applyDiscount(0.1);",
        "    > 23 |     expect(cart.subtotal()).toBe(90);",
        "         |                             ^",
        "      24 |   });",
        "",
        "      at Object.toBe (src/cart/cart.test.ts:23:29)",
        "",
        *suites[30:],
        "",
        "Test Suites: 1 failed, 60 passed, 61 total",
        "Tests:       1 failed, 403 passed, 404 total",
        "Snapshots:   0 total",
        "Time:        18.204 s",
        "Ran all test suites.",
        EXIT1,
    ]
    log = job_log(run_step("npm ci", ["added 1032 packages, and audited 1033 packages in 21s"]),
                  run_step("npm test", out))
    return Case("jest", [Job("web", log, api_steps(("Install", "success"), ("Unit tests", "failure")))],
                ["● Cart › applies the discount before tax", "Expected: 90", "Received: 100",
                 "Tests:       1 failed, 403 passed"])


def case_jest_crowded() -> Case:
    """150 "transient error" warnings printed by passing suites before the failing block, and
    passing suites after it, so the failure is neither first nor in the last lines."""
    out = ["> shop@2.1.0 test", "> jest --ci", ""]
    for i in range(150):
        out += ["  console.warn",
                f"    [prices] transient error: ECONNRESET fetching /v1/prices/{i}, retrying (attempt 1/3)",
                "", f"      at retry (src/api/retry.ts:{20 + i % 5}:13)", ""]
    jest = case_jest().jobs[0].log
    body = [l[29:] for l in jest.lstrip("\ufeff").splitlines()]
    start = body.index("FAIL src/cart/cart.test.ts")
    out += body[start: body.index("Ran all test suites.") + 1] + [EXIT1]
    log = job_log(run_step("npm test", out))
    return Case("jest-crowded", [Job("web", log, api_steps(("Unit tests", "failure")))],
                ["● Cart › applies the discount before tax", "Expected: 90", "Received: 100",
                 "Tests:       1 failed, 403 passed"])


def case_tsc() -> Case:
    out = [
        "> shop@2.1.0 typecheck",
        "> tsc --noEmit -p tsconfig.json",
        "",
        "src/api/client.ts(14,7): error TS2322: Type 'string' is not assignable to type 'number'.",
        "src/cart/cart.ts(88,21): error TS2339: Property 'discount' does not exist on type 'CartItem'.",
        EXIT1,
    ]
    log = job_log(run_step("npm run typecheck", out))
    return Case("tsc", [Job("types", log, api_steps(("Run npm run typecheck", "failure")))],
                ["src/api/client.ts(14,7): error TS2322", "src/cart/cart.ts(88,21): error TS2339"])


def case_eslint() -> Case:
    out = ["> shop@2.1.0 lint", "> eslint . --max-warnings=0", ""]
    for i in range(40):
        out += [f"/home/runner/work/shop/shop/src/legacy/old{i}.js",
                f"  {3 + i}:1  warning  Unexpected console statement  no-console", ""]
    out += [
        "/home/runner/work/shop/shop/src/cart/cart.ts",
        "  12:7   error    'total' is assigned a value but never used  @typescript-eslint/no-unused-vars",
        "  40:15  error    Unexpected any. Specify a different type     @typescript-eslint/no-explicit-any",
        "",
        "✖ 42 problems (2 errors, 40 warnings)",
        "",
        EXIT1,
    ]
    log = job_log(run_step("npx eslint . --max-warnings=0", out))
    return Case("eslint", [Job("lint", log, api_steps(("Lint", "failure")))],
                ["/home/runner/work/shop/shop/src/cart/cart.ts",
                 "12:7   error    'total' is assigned a value but never used",
                 "40:15  error    Unexpected any", "✖ 42 problems (2 errors, 40 warnings)"],
                passed=["test"])


def case_npm() -> Case:
    out = [
        "npm error code ERESOLVE",
        "npm error ERESOLVE unable to resolve dependency tree",
        "npm error",
        "npm error While resolving: shop@2.1.0",
        "npm error Found: react@18.3.1",
        "npm error node_modules/react",
        "npm error   react@\"^18.3.1\" from the root project",
        "npm error",
        "npm error Could not resolve dependency:",
        "npm error peer react@\"^17.0.0\" from react-beautiful-dnd@13.1.1",
        "npm error node_modules/react-beautiful-dnd",
        "npm error   react-beautiful-dnd@\"^13.1.1\" from the root project",
        "npm error",
        "npm error Fix the upstream dependency conflict, or retry",
        "npm error this command with --force or --legacy-peer-deps",
        "npm error to accept an incorrect (and potentially broken) dependency resolution.",
        "npm error",
        "npm error",
        "npm error For a full report see:",
        "npm error /home/runner/.npm/_logs/2026-11-25T10_00_01_234Z-eresolve-report.txt",
        "npm error A complete log of this run can be found in: /home/runner/.npm/_logs/2026-11-25T10_00_01_234Z-debug-0.log",
        EXIT1,
    ]
    log = job_log(run_step("npm ci", out))
    return Case("npm", [Job("web", log, api_steps(("Install dependencies", "failure")))],
                ["npm error ERESOLVE unable to resolve dependency tree",
                 "npm error peer react@\"^17.0.0\" from react-beautiful-dnd@13.1.1"])


# ----------------------------------------------------------------------------- Python typing


def case_mypy() -> Case:
    out = [
        "src/app/util.py:5: note: By default the bodies of untyped functions are not checked",
        "src/app/models.py:27: error: Incompatible return value type (got \"str | None\", expected \"str\")  [return-value]",
        "src/app/views.py:113: error: Argument 1 to \"render\" has incompatible type \"int\"; expected \"str\"  [arg-type]",
        "Found 2 errors in 2 files (checked 48 source files)",
        EXIT1,
    ]
    log = job_log(run_step("mypy src", out))
    return Case("mypy", [Job("types", log, api_steps(("Type check", "failure")))],
                ["src/app/models.py:27: error: Incompatible return value type",
                 "src/app/views.py:113: error: Argument 1", "Found 2 errors in 2 files"])


# ----------------------------------------------------------------------------- dotnet, PHP, JVM


def case_dotnet() -> Case:
    ok = [f"  Passed Acme.Tests.PriceTests.Rounds_{i} [{i % 7} ms]" for i in range(80)]
    out = [
        "  Determining projects to restore...",
        "  All projects are up-to-date for restore.",
        "  Acme -> /home/runner/work/acme/acme/src/Acme/bin/Debug/net8.0/Acme.dll",
        "Test run for /home/runner/work/acme/acme/tests/Acme.Tests/bin/Debug/net8.0/Acme.Tests.dll (.NETCoreApp,Version=v8.0)",
        "VSTest version 17.11.1 (x64)",
        "",
        "Starting test execution, please wait...",
        "A total of 1 test files matched the specified pattern.",
        *ok[:40],
        "  Failed Acme.Tests.CartTests.Total_IncludesTax [12 ms]",
        "  Error Message:",
        "   Assert.Equal() Failure: Values differ",
        "Expected: 17.4",
        "Actual:   17.399999999999999",
        "  Stack Trace:",
        "     at Acme.Tests.CartTests.Total_IncludesTax() in /home/runner/work/acme/acme/tests/Acme.Tests/CartTests.cs:line 23",
        "   at System.RuntimeMethodHandle.InvokeMethod(Object target, Void** arguments, Signature sig, Boolean isConstructor)",
        "   at System.Reflection.MethodBaseInvoker.InvokeWithNoArgs(Object obj, BindingFlags invokeAttr)",
        *ok[40:],
        "",
        "Failed!  - Failed:     1, Passed:    80, Skipped:     0, Total:    81, Duration: 214 ms - Acme.Tests.dll (net8.0)",
        EXIT1,
    ]
    log = job_log(run_step("dotnet test --no-build --logger \"console;verbosity=normal\"", out))
    return Case("dotnet", [Job("dotnet", log, api_steps(("Test", "failure")))],
                ["Failed Acme.Tests.CartTests.Total_IncludesTax [12 ms]", "Assert.Equal() Failure: Values differ",
                 "Expected: 17.4", "Actual:   17.399999999999999", "Failed!  - Failed:     1"])


def case_phpunit() -> Case:
    out = [
        "PHPUnit 11.4.3 by Sebastian Bergmann and contributors.",
        "",
        "Runtime:       PHP 8.3.13",
        "Configuration: /home/runner/work/shop/shop/phpunit.xml",
        "",
        "..............................................................  62 / 120 ( 51%)",
        "...............F..........................................     120 / 120 (100%)",
        "",
        "Time: 00:01.482, Memory: 24.00 MB",
        "",
        "There was 1 failure:",
        "",
        "1) Tests\\Unit\\CartTest::testTotalIncludesTax",
        "Failed asserting that 17.399999999999999 matches expected 17.4.",
        "",
        "/home/runner/work/shop/shop/tests/Unit/CartTest.php:23",
        "",
        "FAILURES!",
        "Tests: 120, Assertions: 311, Failures: 1.",
        EXIT1,
    ]
    log = job_log(run_step("vendor/bin/phpunit", out))
    return Case("phpunit", [Job("php", log, api_steps(("Run vendor/bin/phpunit", "failure")))],
                ["1) Tests\\Unit\\CartTest::testTotalIncludesTax",
                 "Failed asserting that 17.399999999999999 matches expected 17.4.",
                 "/home/runner/work/shop/shop/tests/Unit/CartTest.php:23", "Tests: 120, Assertions: 311, Failures: 1."])


def case_gradle() -> Case:
    frames = [f"        at app//org.junit.jupiter.api.{c}" for c in (
        "AssertionFailureBuilder.build(AssertionFailureBuilder.java:151)",
        "AssertionFailureBuilder.buildAndThrow(AssertionFailureBuilder.java:132)",
        "AssertEquals.failNotEqual(AssertEquals.java:197)",
        "AssertEquals.assertEquals(AssertEquals.java:86)",
        "Assertions.assertEquals(Assertions.java:563)")]
    out = [
        "Starting a Gradle Daemon (subsequent builds will be faster)",
        "> Task :compileJava",
        "> Task :processResources NO-SOURCE",
        "> Task :classes",
        "> Task :compileTestJava",
        "> Task :test",
        "",
        "CartTest > totalIncludesTax() FAILED",
        "    org.opentest4j.AssertionFailedError: expected: <17.4> but was: <17.399999999999999>",
        *frames,
        "        at app//com.acme.shop.CartTest.totalIncludesTax(CartTest.java:23)",
        "",
        "42 tests completed, 1 failed",
        "",
        "> Task :test FAILED",
        "",
        "FAILURE: Build failed with an exception.",
        "",
        "* What went wrong:",
        "Execution failed for task ':test'.",
        "> There were failing tests. See the report at: file:///home/runner/work/shop/shop/build/reports/tests/test/index.html",
        "",
        "* Try:",
        "> Run with --scan to get full insights.",
        "",
        "BUILD FAILED in 41s",
        "4 actionable tasks: 4 executed",
        EXIT1,
    ]
    log = job_log(run_step("./gradlew test", out))
    return Case("gradle", [Job("jvm", log, api_steps(("Run ./gradlew test", "failure")))],
                ["CartTest > totalIncludesTax() FAILED",
                 "org.opentest4j.AssertionFailedError: expected: <17.4> but was: <17.399999999999999>",
                 "com.acme.shop.CartTest.totalIncludesTax(CartTest.java:23)", "42 tests completed, 1 failed"])


# ----------------------------------------------------------------------------- the runner


def case_killed() -> Case:
    out = [f"tests/test_big.py::test_matrix_{i} PASSED" for i in range(30)]
    out += ["tests/test_big.py::test_load_everything ", "/home/runner/work/_temp/3f2a.sh: line 1:  2417 Killed                  pytest -v",
            "##[error]Process completed with exit code 137."]
    log = job_log(run_step("pytest -v", out))
    return Case("killed", [Job("test", log, api_steps(("Run pytest -v", "failure")))],
                ["Killed                  pytest -v", "exit code 137", "tests/test_big.py::test_load_everything"])


def case_timeout() -> Case:
    out = [f"[{i:4d}/5000] building target {i}" for i in range(300)]
    out += ["##[error]The job running on runner GitHub Actions 12 has exceeded the maximum execution time of 30 minutes.",
            "##[error]The operation was canceled."]
    steps = api_steps(("Build", "cancelled"))
    steps[-2]["conclusion"] = "skipped"
    log = job_log(run_step("make -j4 all", out), post=False)
    return Case("timeout", [Job("build", log, steps)],
                ["exceeded the maximum execution time of 30 minutes", "[ 299/5000] building target 299"])


def case_cancelled() -> Case:
    out = [f"Downloading layer {i:02d}/40" for i in range(40)]
    out += ["##[error]The operation was canceled."]
    log = job_log(run_step("docker compose up -d --wait", out), post=False)
    return Case("cancelled", [Job("e2e", log, api_steps(("Start services", "cancelled")))],
                ["The operation was canceled.", "step: Start services"])


# ----------------------------------------------------------------------------- which step


def case_named_continue_on_error() -> Case:
    """A named, continue-on-error lint step fails first; the named test step fails the job.
    The log shows both as ``Run <command>``."""
    lint = ["warning: `ruff` is run in preview mode", "src/app/x.py:3:1: F401 [*] `os` imported but unused",
            "src/app/y.py:9:5: E741 Ambiguous variable name: `l`", "Found 2 errors.", EXIT1]
    log = job_log(run_step("ruff check .", lint), run_step("pytest -q", pytest_out()))
    steps = api_steps(("Lint (advisory)", "failure"), ("Unit tests", "failure"))
    return Case("named-continue-on-error", [Job("test", log, steps)],
                PYTEST_REQUIRED + ["step: Unit tests (Run pytest -q)"], forbidden=["E741 Ambiguous variable name"])


def case_annotation_step() -> Case:
    """A step that prints ``##[error]`` annotations but succeeds, then the failing step (no
    step information from the API)."""
    annotate = ["##[error]src/app/legacy.py:12: TODO marker found (advisory)", "annotated 1 finding"]
    log = job_log(run_step("./scripts/annotate-todos.sh", annotate), run_step("pytest -q", pytest_out()))
    return Case("annotation-only-step", [Job("test", log, [])], PYTEST_REQUIRED + ["step: Run pytest -q"],
                forbidden=["TODO marker found"])


# ----------------------------------------------------------------------------- matrix


def case_matrix() -> Case:
    """Six failed matrix jobs: five fail the same way (other temp dirs and timings), one not."""
    jobs = []
    for k, py in enumerate(["3.9", "3.10", "3.11", "3.12", "3.13"]):
        out = pytest_out(tmp=f"/tmp/pytest-of-runner/pytest-{k}")
        out = [l.replace("in 4.37s", f"in {4 + k}.{k}7s") for l in out]
        big = [f"tests/test_mod{i}.py::test_case_{i} PASSED  [{i % 100:3d}%]" for i in range(200)]
        jobs.append(Job(f"test (ubuntu-latest, {py})", job_log(run_step("pytest -v", big + out)),
                        api_steps(("Test", "failure"))))
    win = pytest_out(test="test_paths", detail=(
        "E       AssertionError: assert 'C:\\\\Users\\\\runneradmin\\\\data' == '/home/runner/data'",),
        where="tests/test_paths.py:17: AssertionError")
    win = [l.replace("tests/test_money.py::test_paths - AssertionError: assert 'EUR' == 'USD'",
                     "tests/test_paths.py::test_paths - AssertionError: assert 'C:' == '/home'") for l in win]
    jobs.insert(3, Job("test (windows-latest, 3.12)", job_log(run_step("pytest -v", win, shell="C:\\Program Files\\Git\\bin\\bash.EXE --noprofile --norc -e -o pipefail {0}")),
                       api_steps(("Test", "failure"))))
    return Case("matrix", jobs, PYTEST_REQUIRED + [
        "same failure in 4 other jobs", "tests/test_paths.py:17: AssertionError",
        "E       AssertionError: assert 'C:\\\\Users\\\\runneradmin\\\\data' == '/home/runner/data'"])


def all_cases() -> list[Case]:
    return [
        case_pytest(), case_crowding(), case_go_verbose(), case_cargo(), case_jest(), case_jest_crowded(), case_tsc(),
        case_eslint(), case_npm(), case_mypy(), case_dotnet(), case_phpunit(), case_gradle(),
        case_killed(), case_timeout(), case_cancelled(), case_named_continue_on_error(),
        case_annotation_step(), case_matrix(),
    ]
