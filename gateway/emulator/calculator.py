"""A small, safe arithmetic evaluator for the `calculator` tool (no `eval`).

Grammar (usual precedence, `^` and `**` right-associative):

    expr   := term (("+" | "-") term)*
    term   := power (("*" | "/" | "//" | "%") power)*
    power  := unary (("^" | "**") power)?
    unary  := ("+" | "-") unary | atom
    atom   := NUMBER | "(" expr ")"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

_TOKEN = re.compile(r"\s*(\d+\.\d*|\.\d+|\d+|\*\*|//|[-+*/%^()])")
_CANDIDATE = re.compile(r"[\d.\s+\-*/%^()]+")
_MAX_LENGTH = 200
_MAX_EXPONENT = 64
_MAX_BITS = 4096

Number = int | float


class CalculatorError(ValueError):
    """The text is not an expression this calculator can evaluate."""


class CalculatorSyntaxError(CalculatorError):
    """The text is not an arithmetic expression at all."""


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise CalculatorSyntaxError(f"unexpected character {text[position]!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


@dataclass
class _Parser:
    tokens: list[str]
    position: int = 0
    operators: int = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise CalculatorSyntaxError("unexpected end of expression")
        self.position += 1
        return token

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            operator = self.take()
            self.operators += 1
            right = self.term()
            value = value + right if operator == "+" else value - right
        return value

    def term(self) -> Fraction:
        value = self.power()
        while self.peek() in ("*", "/", "//", "%"):
            operator = self.take()
            self.operators += 1
            value = _multiplicative(operator, value, self.power())
        return value

    def power(self) -> Fraction:
        base = self.unary()
        if self.peek() in ("^", "**"):
            self.take()
            self.operators += 1
            return _power(base, self.power())
        return base

    def unary(self) -> Fraction:
        if self.peek() in ("+", "-"):
            sign = self.take()
            value = self.unary()
            return -value if sign == "-" else value
        return self.atom()

    def atom(self) -> Fraction:
        item = self.take()
        if item == "(":
            value = self.expr()
            if self.take() != ")":
                raise CalculatorSyntaxError("expected ')'")
            return value
        if item[0].isdigit() or item[0] == ".":
            return Fraction(item)
        raise CalculatorSyntaxError(f"unexpected {item!r}")


def _multiplicative(operator: str, left: Fraction, right: Fraction) -> Fraction:
    if operator == "*":
        return _bounded(left * right)
    if right == 0:
        raise CalculatorError("division by zero")
    if operator == "/":
        return left / right
    if operator == "//":
        return Fraction(left // right)
    return left % right


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise CalculatorError("only integer exponents are supported")
    if abs(exponent) > _MAX_EXPONENT:
        raise CalculatorError("exponent too large")
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero")
    return _bounded(base ** int(exponent))


def _bounded(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > _MAX_BITS or value.denominator.bit_length() > _MAX_BITS:
        raise CalculatorError("result too large")
    return value


def _as_number(value: Fraction) -> Number:
    if value.denominator == 1:
        return int(value)
    return round(float(value), 10)


def evaluate(text: str) -> Number:
    """The value of an arithmetic expression; raises `CalculatorError`."""
    if len(text) > _MAX_LENGTH:
        raise CalculatorError("expression too long")
    parser = _Parser(_tokenize(text))
    value = parser.expr()
    if parser.peek() is not None:
        raise CalculatorSyntaxError(f"unexpected {parser.peek()!r}")
    return _as_number(value)


def _has_operator(text: str) -> bool:
    parser = _Parser(_tokenize(text))
    parser.expr()
    return parser.peek() is None and parser.operators > 0


def find_expression(message: str) -> str | None:
    """The first stretch of `message` that is an arithmetic expression with an operator."""
    for match in _CANDIDATE.finditer(message):
        candidate = match.group(0).strip().rstrip(".")
        if not any(ch.isdigit() for ch in candidate):
            continue
        try:
            if _has_operator(candidate):
                return candidate
        except CalculatorSyntaxError:
            continue
        except CalculatorError:
            return candidate
    return None
