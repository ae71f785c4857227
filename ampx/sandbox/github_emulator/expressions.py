"""A small evaluator for GitHub Actions ``${{ }}`` expressions.

Enough of the language for the workflows a coding agent typically writes:
literals, context lookups (``github.sha``, ``env.FOO``...), ``!``, ``==``,
``!=``, ``<``/``>`` comparisons, ``&&``, ``||``, parentheses and the status and
string functions (``success()``, ``failure()``, ``always()``, ``cancelled()``,
``contains``, ``startsWith``, ``endsWith``, ``format``, ``toJSON``). Unknown
contexts evaluate to null, as on GitHub.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Mapping

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>-?\d+(?:\.\d+)?)
      | (?P<str>'(?:[^']|'')*')
      | (?P<op>==|!=|<=|>=|&&|\|\||[!<>(),\[\]])
      | (?P<dot>\.)
      | (?P<star>\*)
      | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
    )""",
    re.VERBOSE,
)

_EMBED = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


class ExpressionError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"Unexpected character in expression at {pos}: {text!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
    return out


def truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, str):
        return value != ""
    return True


def to_str(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _coerce_num(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip() or 0)
    except ValueError:
        return float("nan")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if type(a) is type(b) or a is None or b is None:
        return a == b
    return _coerce_num(a) == _coerce_num(b)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], contexts: Mapping[str, Any], status: Mapping[str, Callable[[], bool]]):
        self.t = tokens
        self.i = 0
        self.contexts = contexts
        self.status = status
        self.used_status = False

    def peek(self) -> tuple[str, str] | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise ExpressionError(f"Expected {value!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        value = self.or_expr()
        if self.peek() is not None:
            raise ExpressionError(f"Unexpected token {self.peek()[1]!r}")
        return value

    def or_expr(self) -> Any:
        value = self.and_expr()
        while self.peek() == ("op", "||"):
            self.take()
            rhs = self.and_expr()
            value = value if truthy(value) else rhs
        return value

    def and_expr(self) -> Any:
        value = self.cmp_expr()
        while self.peek() == ("op", "&&"):
            self.take()
            rhs = self.cmp_expr()
            value = rhs if truthy(value) else value
        return value

    def cmp_expr(self) -> Any:
        value = self.unary()
        tok = self.peek()
        if tok and tok[0] == "op" and tok[1] in ("==", "!=", "<", ">", "<=", ">="):
            self.take()
            rhs = self.unary()
            op = tok[1]
            if op == "==":
                return _equal(value, rhs)
            if op == "!=":
                return not _equal(value, rhs)
            a, b = _coerce_num(value), _coerce_num(rhs)
            return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        return value

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not truthy(self.unary())
        return self.postfix(self.primary())

    def postfix(self, value: Any) -> Any:
        while True:
            tok = self.peek()
            if tok == ("dot", "."):
                self.take()
                kind, name = self.take()
                if kind == "star":
                    value = list(value.values()) if isinstance(value, dict) else value
                    continue
                value = value.get(name) if isinstance(value, dict) else None
            elif tok == ("op", "["):
                self.take()
                key = self.or_expr()
                self.take("]")
                if isinstance(value, dict):
                    value = value.get(to_str(key))
                elif isinstance(value, list):
                    idx = int(_coerce_num(key))
                    value = value[idx] if 0 <= idx < len(value) else None
                else:
                    value = None
            else:
                return value

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "op" and text == "(":
            value = self.or_expr()
            self.take(")")
            return value
        if kind == "name":
            low = text.lower()
            if low in ("true", "false"):
                return low == "true"
            if low == "null":
                return None
            if self.peek() == ("op", "("):
                self.take()
                args = []
                if self.peek() != ("op", ")"):
                    args.append(self.or_expr())
                    while self.peek() == ("op", ","):
                        self.take()
                        args.append(self.or_expr())
                self.take(")")
                return self.call(low, args)
            return self.contexts.get(text, self.contexts.get(low))
        raise ExpressionError(f"Unexpected token {text!r}")

    def call(self, name: str, args: list[Any]) -> Any:
        if name in self.status:
            self.used_status = True
            return self.status[name]()
        if name == "contains":
            hay, needle = args
            if isinstance(hay, list):
                return any(_equal(x, needle) for x in hay)
            return to_str(needle).lower() in to_str(hay).lower()
        if name == "startswith":
            return to_str(args[0]).lower().startswith(to_str(args[1]).lower())
        if name == "endswith":
            return to_str(args[0]).lower().endswith(to_str(args[1]).lower())
        if name == "format":
            fmt = to_str(args[0])
            return re.sub(r"\{(\d+)\}", lambda m: to_str(args[int(m.group(1)) + 1]), fmt)
        if name == "join":
            sep = to_str(args[1]) if len(args) > 1 else ","
            return sep.join(to_str(x) for x in args[0]) if isinstance(args[0], list) else to_str(args[0])
        if name == "tojson":
            return json.dumps(args[0], indent=2)
        if name == "fromjson":
            return json.loads(to_str(args[0]))
        if name == "hashfiles":
            return ""
        raise ExpressionError(f"Unrecognized function: '{name}'")


def evaluate(expr: str, contexts: Mapping[str, Any], status: Mapping[str, Callable[[], bool]] | None = None) -> tuple[Any, bool]:
    """Evaluate one expression; returns (value, whether a status function was used)."""
    body = expr.strip()
    m = re.fullmatch(r"\$\{\{(.*)\}\}", body, re.DOTALL)
    if m:
        body = m.group(1)
    parser = _Parser(_tokens(body), contexts, status or {})
    return parser.parse(), parser.used_status


def substitute(text: str, contexts: Mapping[str, Any]) -> str:
    """Replace every ``${{ expr }}`` inside ``text`` with its string value."""
    return _EMBED.sub(lambda m: to_str(evaluate(m.group(1), contexts)[0]), text)


def condition(expr: Any, contexts: Mapping[str, Any], *, failed: bool, cancelled: bool = False) -> bool:
    """Evaluate a step/job ``if:``; without a status function GitHub implies ``success() &&``."""
    if expr is None:
        return not failed and not cancelled
    if isinstance(expr, bool):
        return expr and not failed and not cancelled
    status = {
        "success": lambda: not failed and not cancelled,
        "failure": lambda: failed,
        "always": lambda: True,
        "cancelled": lambda: cancelled,
    }
    value, used_status = evaluate(str(expr), contexts, status)
    if not used_status and (failed or cancelled):
        return False
    return truthy(value)
