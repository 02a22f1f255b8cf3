"""The built-in tools: ``calculator`` (safe arithmetic) and ``weather`` (deterministic).

Both exist so that ``agentstream worker``, the demo, the tests and the
benchmarks work with no agents file and no network. ``calculator`` evaluates
model-written text, so it must be safe: it walks the parsed ``ast`` and allows
numbers, ``+ - * / // % **``, unary signs and parentheses only. Names, calls,
attribute access, subscripts and every other node are refused, and results are
kept small (exponents and magnitudes are bounded), so no input can run code,
exhaust memory or spin the CPU.
"""

from __future__ import annotations

import ast
import hashlib
import math
import operator
from collections.abc import Callable

from agentstream.errors import AgentstreamError

MAX_EXPRESSION_CHARS = 500
"""Longer input is refused before parsing (also bounds parser nesting)."""
MAX_EXPONENT = 1_000
"""``a ** b`` with ``|b|`` above this is refused."""
MAX_DIGITS = 400
"""Integer results above 10**MAX_DIGITS are refused (no huge-number DoS through * or **)."""


class ToolError(AgentstreamError):
    """A tool refused its input or failed; the message is shown to the model."""


_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _digits(value: float) -> float:
    return math.log10(abs(value)) if value else 0.0


def _check_size(value: float) -> float:
    if isinstance(value, int) and _digits(value) > MAX_DIGITS:
        raise ToolError(f"result too large (more than {MAX_DIGITS} digits)")
    if isinstance(value, float) and math.isinf(value):
        raise ToolError("result too large")
    return value


def _power(base: float, exponent: float) -> float:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponent too large (limit {MAX_EXPONENT})")
    whole = isinstance(base, int) and isinstance(exponent, int)
    if whole and exponent > 0 and _digits(base) * exponent > MAX_DIGITS:
        raise ToolError(f"result too large (more than {MAX_DIGITS} digits)")
    if base == 0 and exponent < 0:
        raise ToolError("division by zero")
    try:
        result: object = base**exponent
    except OverflowError:
        raise ToolError("result too large") from None
    if not isinstance(result, int | float):
        raise ToolError("result is not a real number")
    return result


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ToolError(f"only numbers are allowed, not {node.value!r}")
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and right == 0:
            raise ToolError("division by zero")
        try:
            return _check_size(_BINARY[type(node.op)](left, right))
        except OverflowError:
            raise ToolError("result too large") from None
    raise ToolError(f"not allowed in an arithmetic expression: {type(node).__name__}")


def _format(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12g}"


def calculate(expression: str) -> str:
    """Evaluate arithmetic ``expression`` safely; raises :class:`ToolError` with the reason."""
    text = expression.strip().replace("\u00d7", "*").replace("\u00f7", "/").replace("^", "**")
    if not text:
        raise ToolError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression too long (limit {MAX_EXPRESSION_CHARS} characters)")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    try:
        return _format(_eval(tree))
    except RecursionError:
        raise ToolError("expression nested too deeply") from None
    except OverflowError:
        raise ToolError("result too large") from None


async def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression (numbers, + - * / // % ** and parentheses)."""
    return calculate(expression)


_CONDITIONS = (
    "sunny",
    "partly cloudy",
    "cloudy",
    "light rain",
    "rain",
    "windy",
    "foggy",
    "snow",
)


def forecast(city: str) -> str:
    """The (made up, deterministic) weather of ``city``: the same city always gets the same."""
    name = " ".join(city.split())
    if not name:
        raise ToolError("city must not be empty")
    digest = hashlib.sha256(name.casefold().encode("utf-8")).digest()
    temperature = digest[0] % 46 - 10
    conditions = _CONDITIONS[digest[1] % len(_CONDITIONS)]
    if conditions == "snow" and temperature > 2:
        conditions = "cloudy"
    return f"{name}: {temperature}°C, {conditions}"


async def weather(city: str) -> str:
    """Current weather for a city (temperature in °C and conditions)."""
    return forecast(city)
