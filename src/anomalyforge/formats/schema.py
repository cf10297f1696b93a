"""Typed JSON documents: dataclass <-> dict with one-line errors naming the file.

Each format module declares a dataclass whose field annotations are the schema (str, int,
float, bool, `X | None`, `list[X]`, `dict[str, X]`, `Any`, or another such dataclass). `parse`
checks a decoded JSON object against it: a missing required key, a value of the wrong type or a
`schema_version` newer than the code reads is a `DataError` naming the file (and the key). Keys
the schema does not name are kept in the dataclass's `extra` field and written back unchanged, so
a file written by a newer minor version, or a free-form dict, survives a round trip.
A format's top-level dataclass derives from `Document`, which names its file, schema version and
`kind` tag once and gives it `from_dict`, `to_dict`, `write` and the reading of its file.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from anomalyforge.atomic import write_json_atomic
from anomalyforge.errors import ConfigError, DataError

T = TypeVar("T")
SCHEMA_KEY = "schema_version"
EXTRA = "extra"


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    if tp is Any:
        return "any value"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list"
    if origin is dict or tp is dict:
        return "an object"
    if dataclasses.is_dataclass(tp):
        return "an object"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _json_type(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


class _Mismatch(Exception):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key, self.problem = key, problem


def _convert(value: Any, tp: Any, key: str) -> Any:
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        deeper = None
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg, key)
            except _Mismatch as m:
                if m.key != key:  # the value has this arm's shape but something inside is wrong
                    deeper = deeper or m
        raise deeper or _Mismatch(key, f"must be {_describe(tp)}, got {_json_type(value)}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Mismatch(key, f"must be an object, got {_json_type(value)}")
        return _from_dict(tp, value, f"{key}.")
    if origin is list:
        if not isinstance(value, list):
            raise _Mismatch(key, f"must be a list, got {_json_type(value)}")
        (arg,) = typing.get_args(tp) or (Any,)
        return [_convert(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _Mismatch(key, f"must be an object, got {_json_type(value)}")
        args = typing.get_args(tp)
        arg = args[1] if len(args) == 2 else Any
        return {k: _convert(v, arg, f"{key}.{k}") for k, v in value.items()}
    if tp is type(None):
        if value is not None:
            raise _Mismatch(key, f"must be null, got {_json_type(value)}")
        return None
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}.get(tp)
    if ok is None:
        raise TypeError(f"schema type {tp!r} not supported")
    if not ok(value):
        raise _Mismatch(key, f"must be {_describe(tp)}, got {_json_type(value)}")
    return value


def _from_dict(cls: type[T], doc: dict, prefix: str = "") -> T:
    hints = _hints(cls)  # type: ignore[arg-type]  # a dataclass type is hashable; T has no Hashable bound
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # T is a dataclass here
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name == EXTRA:
            continue
        if name not in doc:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _Mismatch(prefix + name, "missing")
            continue
        kwargs[name] = _convert(doc[name], hints[name], prefix + name)
    if EXTRA in fields:
        kwargs[EXTRA] = {k: v for k, v in doc.items() if k not in fields}
    try:
        return cls(**kwargs)
    except (ValueError, ConfigError) as exc:  # a dataclass's own __post_init__ checks
        raise _Mismatch(prefix.rstrip(".") or cls.__name__, str(exc)) from None


def check_version(doc: dict, where: str | Path, current: int) -> int:
    """The document's schema version (1 when absent: files written before versioning);
    DataError when it is not an integer or is newer than `current`."""
    v = doc.get(SCHEMA_KEY, 1)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise DataError(where, f"'{SCHEMA_KEY}' must be a positive integer, got {v!r}")
    if v > current:
        raise DataError(where, f"{SCHEMA_KEY} {v} is newer than this anomalyforge reads ({current}); "
                               f"upgrade anomalyforge")
    return v


def parse(cls: type[T], doc: Any, where: str | Path, current: int | None = None) -> T:
    """`doc` (a decoded JSON object) as a `cls`; DataError naming `where` and the key on a mismatch."""
    if not isinstance(doc, dict):
        raise DataError(where, f"expected a JSON object, got {_json_type(doc)}")
    if current is not None:
        check_version(doc, where, current)
    try:
        return _from_dict(cls, doc)
    except _Mismatch as m:
        msg = f"missing key {m.key!r}" if m.problem == "missing" else f"{m.key!r} {m.problem}"
        raise DataError(where, msg) from None


def dump(obj: Any) -> Any:
    """A schema dataclass (or list/dict of them) as plain JSON values, `extra` keys merged back."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            if f.name != EXTRA:
                out[f.name] = dump(getattr(obj, f.name))
        for k, v in (getattr(obj, EXTRA, None) or {}).items():
            out.setdefault(k, v)
        return out
    if isinstance(obj, dict):
        return {k: dump(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [dump(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def read_json(path: str | Path, what: str) -> Any:
    """The decoded JSON of `path`; DataError naming it when missing, unreadable or not JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, f"no {what} found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read {what} ({exc.__class__.__name__})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON ({exc})") from None


def differing(old: dict, new: dict, keys: typing.Iterable[str]) -> list[str]:
    """The `keys` whose JSON values differ between two documents (None when absent)."""
    def norm(v: Any) -> str:
        return json.dumps(dump(v), sort_keys=True, default=str)

    return [k for k in keys if norm(old.get(k)) != norm(new.get(k))]


def refuse_other_job(folder: str | Path, old: dict, new: dict, keys: typing.Iterable[str],
                     what: str = "run") -> None:
    """The one resume check: ConfigError when `folder` already holds a job (a run, a benchmark,
    a study) whose identifying `keys` differ from the one asked for now."""
    diff = differing(old, new, keys)
    if diff:
        raise ConfigError(f"{folder}: folder holds a different {what} ({', '.join(diff)} differ); "
                          f"pick another --out or repeat the same options")


class Document:
    """Base of a format's top-level dataclass (declared `@dataclass class X(Document)` with a
    `schema_version` field): its file name (`FILE`), the schema version the code writes and reads
    (`VERSION`), an optional `kind` tag that must match (`KIND`), and what every format does the
    same way: check, dump, write atomically, read its file with one-line errors."""

    FILE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    KIND: ClassVar[str | None] = None
    schema_version: int

    def __post_init__(self) -> None:
        kind = getattr(self, "kind", None)
        if self.KIND is not None and kind != self.KIND:
            raise ValueError(f"kind must be {self.KIND!r}, got {kind!r}")

    @classmethod
    def from_dict(cls, doc: Any, where: str | Path | None = None) -> Self:
        """`doc` checked against the schema; DataError naming `where` (default: FILE) and the key."""
        return parse(cls, doc, cls.FILE if where is None else where, cls.VERSION)

    @classmethod
    def file_in(cls, path: str | Path) -> Path:
        """`path` itself when it names a .json file, else FILE inside the folder `path`."""
        path = Path(path)
        return path if path.suffix == ".json" and not path.is_dir() else path / cls.FILE

    @classmethod
    def read_file(cls, path: str | Path, what: str) -> Self:
        """The document in the file `path` (`what` it is, for the error messages)."""
        return cls.from_dict(read_json(path, what), path)

    @classmethod
    def read_folder(cls, path: str | Path, folder: str, what: str, hint: str) -> Self:
        """FILE of the `folder` (e.g. "model folder") `path`, or the file itself; DataError naming
        it when the folder is missing or holds no FILE (`hint`: how to make one)."""
        path = Path(path)
        if path.is_dir():
            path = path / cls.FILE
        elif not path.exists():
            raise DataError(path, f"{folder} not found")
        if not path.is_file():
            raise DataError(path.parent, f"not a {folder} (no {cls.FILE}); {hint}")
        return cls.read_file(path, what)

    def to_dict(self) -> dict:
        return dump(self)

    def write(self, path: str | Path) -> Path:
        """Write atomically: to `path` (a .json file) or to FILE inside the folder `path`."""
        self.schema_version = self.VERSION
        return write_json_atomic(self.file_in(path), self.to_dict())
