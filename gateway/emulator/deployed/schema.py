"""Declared types for the deployed dialect: one declaration, two uses.

Each `Type` can check a decoded JSON value (reporting problems in FastAPI's
pydantic-v2 vocabulary, like validation.py) and can describe itself as a JSON
Schema fragment for the generated OpenAPI 3.1 document. A `Model` is a named
object type (a component schema); `Ref(model)` points at one. Because the
handlers validate with the very declarations that /openapi.json prints, the
document cannot drift from what the dialect accepts.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from ..errors import Issue, issue
from ..validation import (
    INVALID,
    Check,
    Field,
    Loc,
    any_json,
    integer,
    json_object,
    list_of,
    nested,
    nullable,
    number,
    string,
)

Schema = dict[str, Any]
COMPONENTS = "#/components/schemas/"


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


def _fail(issues: list[Issue], entry: Issue) -> Any:
    issues.append(entry)
    return INVALID


def _bounded(schema: Schema, **bounds: Any) -> Schema:
    return {**schema, **{key: value for key, value in bounds.items() if value is not None}}


class Type:
    """A JSON type: how to check a value and how to describe it."""

    def check(self) -> Check:
        raise NotImplementedError

    def schema(self) -> Schema:
        raise NotImplementedError

    def models(self) -> Iterator[Model]:
        """The models this type refers to (for collecting the components)."""
        return iter(())


def _text_check(min_length: int | None, max_length: int | None) -> Check:
    base = string(min_length or 0)

    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        text = base(value, loc, issues)
        if text is INVALID or max_length is None or len(text) <= max_length:
            return text
        unit = "character" if max_length == 1 else "characters"
        msg = f"String should have at most {max_length} {unit}"
        return _fail(issues, issue(loc, "string_too_long", msg, value, max_length=max_length))

    return check


@dataclass(frozen=True)
class Str(Type):
    min_length: int | None = None
    max_length: int | None = None

    def check(self) -> Check:
        return _text_check(self.min_length, self.max_length)

    def schema(self) -> Schema:
        return _bounded({"type": "string"}, minLength=self.min_length, maxLength=self.max_length)


@dataclass(frozen=True)
class DateTime(Type):
    """A timestamp; only ever answered, never accepted, so any string passes."""

    def check(self) -> Check:
        return string()

    def schema(self) -> Schema:
        return {"type": "string", "format": "date-time"}


@dataclass(frozen=True)
class Int(Type):
    ge: int | None = None
    le: int | None = None

    def check(self) -> Check:
        return integer(self.ge, self.le)

    def schema(self) -> Schema:
        return _bounded({"type": "integer"}, minimum=self.ge, maximum=self.le)


def _float_check(ge: float | None, le: float | None) -> Check:
    """pydantic's float bounds: the message shows the bound as declared, `ctx` as a float."""
    base = number()

    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        result = base(value, loc, issues)
        if result is INVALID:
            return INVALID
        if ge is not None and result < ge:
            msg = f"Input should be greater than or equal to {ge}"
            return _fail(issues, issue(loc, "greater_than_equal", msg, value, ge=float(ge)))
        if le is not None and result > le:
            msg = f"Input should be less than or equal to {le}"
            return _fail(issues, issue(loc, "less_than_equal", msg, value, le=float(le)))
        return result

    return check


@dataclass(frozen=True)
class Float(Type):
    ge: float | None = None
    le: float | None = None

    def check(self) -> Check:
        return _float_check(self.ge, self.le)

    def schema(self) -> Schema:
        return _bounded({"type": "number"}, minimum=self.ge, maximum=self.le)


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def _lax_bool(value: Any, loc: Loc, issues: list[Issue]) -> Any:
    """pydantic's lax booleans: also 0/1 and words such as "yes" or "off"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        msg = "Input should be a valid boolean, unable to interpret input"
        return _fail(issues, issue(loc, "bool_parsing", msg, value))
    return _fail(issues, issue(loc, "bool_type", "Input should be a valid boolean", value))


@dataclass(frozen=True)
class Bool(Type):
    def check(self) -> Check:
        return _lax_bool

    def schema(self) -> Schema:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Dict(Type):
    """A free-form JSON object (`dict` in the service's models)."""

    def check(self) -> Check:
        return json_object()

    def schema(self) -> Schema:
        return {"additionalProperties": True, "type": "object"}


@dataclass(frozen=True)
class PlainObject(Type):
    """An object without further description (the `ctx` of a validation issue)."""

    def check(self) -> Check:
        return json_object()

    def schema(self) -> Schema:
        return {"type": "object"}


@dataclass(frozen=True)
class AnyValue(Type):
    def check(self) -> Check:
        return any_json()

    def schema(self) -> Schema:
        return {}


@dataclass(frozen=True)
class Array(Type):
    item: Type
    title: str | None = None

    def check(self) -> Check:
        return list_of(self.item.check())

    def schema(self) -> Schema:
        schema: Schema = {"items": self.item.schema(), "type": "array"}
        if self.title is not None:
            schema["title"] = self.title
        return schema

    def models(self) -> Iterator[Model]:
        return self.item.models()


@dataclass(frozen=True)
class Nullable(Type):
    """`Optional[...]`: the type, or null."""

    inner: Type

    def check(self) -> Check:
        return nullable(self.inner.check())

    def schema(self) -> Schema:
        return {"anyOf": [self.inner.schema(), {"type": "null"}]}

    def models(self) -> Iterator[Model]:
        return self.inner.models()


@dataclass(frozen=True)
class Either(Type):
    """A value of any of the given types (answers only: the check accepts anything)."""

    choices: tuple[Type, ...]

    def check(self) -> Check:
        return any_json()

    def schema(self) -> Schema:
        return {"anyOf": [choice.schema() for choice in self.choices]}

    def models(self) -> Iterator[Model]:
        for choice in self.choices:
            yield from choice.models()


_LOCAL_BAD = re.compile(r"[\s\"(),:;<>@\[\\\]]")
_DOMAIN_OK = re.compile(r"^[A-Za-z0-9.-]+$")


def _email_problem(text: str) -> str | None:
    """Why an address is refused, in the words of the email-validator package."""
    if "@" not in text:
        return "An email address must have an @-sign."
    local, _, domain = text.partition("@")
    if not local:
        return "There must be something before the @-sign."
    if not domain:
        return "There must be something after the @-sign."
    if " " in local:
        return "The email address contains invalid characters before the @-sign: SPACE."
    if ".." in text:
        return "An email address cannot have two periods in a row."
    if not _DOMAIN_OK.match(domain):
        bad = sorted({char for char in domain if not re.match(r"[A-Za-z0-9.-]", char)})
        shown = ", ".join(repr(char) for char in bad)
        return f"The part after the @-sign contains invalid characters: {shown}."
    if "." not in domain:
        return "The part after the @-sign is not valid. It should have a period."
    if _LOCAL_BAD.search(local) or local.startswith(".") or local.endswith("."):
        return "The email address contains invalid characters before the @-sign."
    if domain.startswith(".") or domain.endswith(".") or domain.startswith("-"):
        return "The part after the @-sign is not valid."
    return None


def normalise_email(text: str) -> str:
    """Surrounding blanks dropped and the domain in lower case (the local part is kept)."""
    local, _, domain = text.strip().partition("@")
    return f"{local}@{domain.lower()}"


def _email(value: Any, loc: Loc, issues: list[Issue]) -> Any:
    if not isinstance(value, str):
        return _fail(issues, issue(loc, "string_type", "Input should be a valid string", value))
    problem = _email_problem(value.strip())
    if problem is not None:
        msg = f"value is not a valid email address: {problem}"
        return _fail(issues, issue(loc, "value_error", msg, value, reason=problem))
    return normalise_email(value)


@dataclass(frozen=True)
class Email(Type):
    def check(self) -> Check:
        return _email

    def schema(self) -> Schema:
        return {"type": "string", "format": "email"}


_DEFAULT_PORTS = {"http": 80, "https": 443}
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


def _url_error(loc: Loc, value: Any, reason: str) -> Issue:
    return issue(loc, "url_parsing", f"Input should be a valid URL, {reason}", value, error=reason)


def normalise_url(text: str) -> str:
    """The URL as pydantic prints an `HttpUrl`: lower-case host, no default port, a path."""
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + host
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{parts.port}"
    url = f"{scheme}://{netloc}{quote(parts.path or '/', safe=_PATH_SAFE)}"
    if parts.query:
        url += "?" + quote(parts.query, safe=_PATH_SAFE + "?")
    if parts.fragment:
        url += "#" + quote(parts.fragment, safe=_PATH_SAFE + "?#")
    return url


def _http_url(max_length: int) -> Check:
    def check(value: Any, loc: Loc, issues: list[Issue]) -> Any:
        if not isinstance(value, str):
            return _fail(
                issues, issue(loc, "url_type", "URL input should be a string or URL", value)
            )
        if not value:
            return _fail(issues, _url_error(loc, value, "input is empty"))
        if len(value) > max_length:
            msg = f"URL should have at most {max_length} characters"
            return _fail(issues, issue(loc, "url_too_long", msg, value, max_length=max_length))
        parts = urlsplit(value.strip())
        if not parts.scheme:
            return _fail(issues, _url_error(loc, value, "relative URL without a base"))
        if parts.scheme.lower() not in _DEFAULT_PORTS:
            msg = "URL scheme should be 'http' or 'https'"
            entry = issue(loc, "url_scheme", msg, value, expected_schemes="'http' or 'https'")
            return _fail(issues, entry)
        if not parts.hostname:
            return _fail(issues, _url_error(loc, value, "empty host"))
        try:
            return normalise_url(value.strip())
        except ValueError:
            return _fail(issues, _url_error(loc, value, "invalid port number"))

    return check


@dataclass(frozen=True)
class Url(Type):
    """An `HttpUrl`: http or https, at most `max_length` characters; answered normalised."""

    max_length: int = 2083

    def check(self) -> Check:
        return _http_url(self.max_length)

    def schema(self) -> Schema:
        return {"type": "string", "maxLength": self.max_length, "minLength": 1, "format": "uri"}


@dataclass(frozen=True)
class Prop:
    """A member of a model: its type, whether it must be sent, and its default.

    A member that is neither required nor given a default defaults to null.
    """

    name: str
    type: Type
    required: bool = False
    default: Any = NO_DEFAULT

    def schema(self) -> Schema:
        schema = {**self.type.schema(), "title": self.name.replace("_", " ").title()}
        if self.default is not NO_DEFAULT and self.default is not None:
            schema["default"] = copy.deepcopy(self.default)
        return schema

    def field(self) -> Field:
        value = None if self.default is NO_DEFAULT else self.default

        def default() -> Any:
            return copy.deepcopy(value)

        return Field(self.name, self.type.check(), self.required, default)


@dataclass(frozen=True)
class Model:
    """A named object type: a component schema of the document."""

    name: str
    props: tuple[Prop, ...]
    fields: tuple[Field, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(prop.field() for prop in self.props))

    @property
    def required(self) -> list[str]:
        return [prop.name for prop in self.props if prop.required]

    def schema(self) -> Schema:
        schema: Schema = {
            "properties": {prop.name: prop.schema() for prop in self.props},
            "type": "object",
            "title": self.name,
        }
        if self.required:
            schema["required"] = self.required
        return schema

    def check(self) -> Check:
        return nested(self.fields)

    def references(self) -> Iterator[Model]:
        for prop in self.props:
            yield from prop.type.models()


@dataclass(frozen=True)
class Ref(Type):
    model: Model

    def check(self) -> Check:
        return self.model.check()

    def schema(self) -> Schema:
        return {"$ref": COMPONENTS + self.model.name}

    def models(self) -> Iterator[Model]:
        yield self.model


def closure(roots: Iterator[Model]) -> dict[str, Model]:
    """Every model reachable from `roots`, by name."""
    found: dict[str, Model] = {}
    pending = list(roots)
    while pending:
        model = pending.pop()
        if model.name in found:
            continue
        found[model.name] = model
        pending.extend(model.references())
    return found
