"""TOML -> typed, frozen dataclasses.

Each server declares its configuration as frozen dataclasses next to the code
that uses it; this module turns a TOML table into them. Every problem in a
file is collected and reported at once, each as
``FILE: dotted.key: what was expected, what was found``, and unknown keys are
errors that name the nearest valid key (a typo never passes silently).

The value types network configurations need are here too: `Address`
(``HOST:PORT``, ``[::1]:53``), `Network` (CIDR), `Duration` (``"30s"``),
`Size` (``"10MiB"``), `Path` (relative to the config file) and `Location` (a path
like `Path`, or a URL such as ``postgresql://host/db`` kept as written).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError
from .servers import REGISTRY

#: Top-level sections a config file may hold: one per registered server.
SECTIONS = (*REGISTRY, "admin")  # every server's, and the process's admin endpoint

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Duration(float):
    """Seconds. Written as a number of seconds or ``"250ms"``, ``"30s"``, ``"5m"``, ``"2h"``."""

    _UNITS: typing.ClassVar[dict[str, float]] = {
        "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0,
    }

    @classmethod
    def parse(cls, value: object) -> Duration:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int | float):
            if value < 0:
                raise ValueError
            return cls(value)
        if isinstance(value, str):
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*", value)
            if m:
                return cls(float(m.group(1)) * cls._UNITS[m.group(2)])
        raise ValueError

    describe = 'a duration such as 30, "250ms", "30s", "5m" or "2h"'


class Size(int):
    """Bytes. Written as an integer or ``"512B"``, ``"64KiB"``, ``"10MiB"``, ``"1GB"``."""

    _UNITS: typing.ClassVar[dict[str, int]] = {
        "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
        "kib": 1024, "mib": 1024**2, "gib": 1024**3, "k": 1024, "m": 1024**2, "g": 1024**3,
    }

    @classmethod
    def parse(cls, value: object) -> Size:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            if value < 0:
                raise ValueError
            return cls(value)
        if isinstance(value, str):
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
            if m and m.group(2).lower() in cls._UNITS | {"": 1}:
                return cls(int(float(m.group(1)) * cls._UNITS.get(m.group(2).lower(), 1)))
        raise ValueError

    describe = 'a size such as 4096, "64KiB", "10MiB" or "1GB"'


@dataclasses.dataclass(frozen=True, slots=True)
class Address:
    """A ``HOST:PORT`` listening or connecting address; IPv6 hosts in brackets."""

    host: str
    port: int

    @classmethod
    def parse(cls, value: object, *, default_port: int | None = None) -> Address:
        if not isinstance(value, str) or not value:
            raise ValueError
        m = re.fullmatch(r"\[([0-9A-Fa-f:.%a-zA-Z0-9]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", value)
        if not m:
            raise ValueError
        host = m.group(1) or m.group(3)
        port_text = m.group(2) if m.group(1) else m.group(4)
        if port_text is None:
            if default_port is None:
                raise ValueError
            port = default_port
        else:
            port = int(port_text)
        if m.group(1):
            ipaddress.IPv6Address(host.split("%")[0])  # raises ValueError when not IPv6
        if not 0 <= port <= 65535:
            raise ValueError
        return cls(host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    describe = 'an address "HOST:PORT" such as "127.0.0.1:8443" or "[::1]:53"'


class Location(str):
    """A file path (made absolute against the config file's directory, as `Path`) or a
    URL ("scheme://..."), kept as written: where a store may be a file or a server."""

    @property
    def is_url(self) -> bool:
        return re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", self) is not None

    @property
    def scheme(self) -> str:
        return self.split("://", 1)[0].lower() if self.is_url else ""

    @property
    def path(self) -> Path:
        return Path(self)


def field(default: Any = dataclasses.MISSING, *, min: float | None = None,
          max: float | None = None, **kw: Any) -> Any:
    """A dataclass field with an optional numeric range the loader enforces."""
    meta = {"min": min, "max": max}
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple or default_factory for mutable defaults")
    return dataclasses.field(default=default, metadata=meta, **kw)


# --- loading -----------------------------------------------------------------------------

_MISSING = object()


class _Loader:
    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> object:
        self.problems.append(f"{self.source}: {key}: {message}")
        return _MISSING

    def table(self, cls: type, raw: object, key: str) -> object:
        if not isinstance(raw, Mapping):
            return self.problem(key, f"expected a table, got {_show(raw)}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in raw:
            if name not in fields:
                hint = difflib.get_close_matches(name, list(fields), n=1)
                also = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.problem(f"{key}.{name}", f"unknown key{also}")
        values: dict[str, object] = {}
        ok = True
        for name, f in fields.items():
            if name in raw:
                value = self.value(hints[name], raw[name], f"{key}.{name}", f.metadata)
                if value is _MISSING:
                    ok = False
                else:
                    values[name] = value
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.problem(f"{key}.{name}", "required key is missing")
                ok = False
        if not ok:
            return _MISSING
        try:
            return cls(**values)
        except ValueError as exc:
            # __post_init__ cross-field checks raise ValueError with a sentence
            return self.problem(key, str(exc))

    def value(self, tp: Any, raw: object, key: str, meta: Mapping[str, Any]) -> object:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            lists = [a for a in args if typing.get_origin(a) is tuple]
            if lists and len(lists) < len(args):
                # a value or a list of tables (DHCP's `subnet = "10.0.0.0/24"` or
                # `[[dhcp.subnet]]`): the TOML's shape says which
                if isinstance(raw, list | Mapping):
                    return self.value(lists[0], raw, key, meta)
                rest = [a for a in args if a not in lists]
                inner = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
                return self.value(inner, raw, key, meta)
            if tp == Network or set(args) == set(typing.get_args(Network)):
                return self.network(raw, key)
            if len(args) == 1:
                return self.value(args[0], raw, key, meta)
            if all(a in (int, str, float, bool) for a in args):
                # a port or a range ("8000-8010"): the TOML value's own type picks
                for a in args:
                    if type(raw) is a:
                        return self.value(a, raw, key, meta)
                names = " or ".join({int: "an integer", str: "a string", float: "a number",
                                     bool: "true or false"}[a] for a in args)
                return self.problem(key, f"expected {names}, got {_show(raw)}")
            raise TypeError(f"unsupported config type {tp}")
        if origin is tuple:
            (inner, *_rest) = typing.get_args(tp)
            if not isinstance(raw, list):
                if (dataclasses.is_dataclass(inner) and inner is not Address) or \
                        isinstance(raw, Mapping):
                    return self.problem(key, f"expected a list, got {_show(raw)}")
                raw = [raw]  # a single value (an address too) stands for a one-element list
            items = [self.value(inner, item, f"{key}[{i}]", meta) for i, item in enumerate(raw)]
            return _MISSING if _MISSING in items else tuple(items)
        if origin is dict:  # a free-form table (its server checks the values)
            if isinstance(raw, Mapping):
                return dict(raw)
            return self.problem(key, f"expected a table, got {_show(raw)}")
        if origin is Literal:
            choices = typing.get_args(tp)
            if raw in choices:
                return raw
            return self.problem(key, f"expected one of {', '.join(map(repr, choices))}, "
                                     f"got {_show(raw)}")
        if dataclasses.is_dataclass(tp) and tp is not Address:
            return self.table(tp, raw, key)
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            return self.problem(key, f"expected true or false, got {_show(raw)}")
        if tp is int or tp is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float) or (
                    tp is int and not isinstance(raw, int)):
                return self.problem(key, f"expected {_range_text(tp, meta)}, got {_show(raw)}")
            lo, hi = meta.get("min"), meta.get("max")
            if (lo is not None and raw < lo) or (hi is not None and raw > hi):
                return self.problem(key, f"expected {_range_text(tp, meta)}, got {_show(raw)}")
            return tp(raw)
        if tp is str:
            if isinstance(raw, str):
                return raw
            return self.problem(key, f"expected a string, got {_show(raw)}")
        if tp in (Duration, Size, Address):
            try:
                value = tp.parse(raw)
            except (ValueError, TypeError):
                return self.problem(key, f"expected {tp.describe}, got {_show(raw)}")
            lo, hi = meta.get("min"), meta.get("max")
            if tp is not Address and ((lo is not None and value < lo) or
                                      (hi is not None and value > hi)):
                bounds = " and ".join(x for x in (lo is not None and f">= {lo}",
                                                  hi is not None and f"<= {hi}") if x)
                return self.problem(key, f"expected {tp.describe} ({bounds}), got {_show(raw)}")
            return value
        if tp is Path:
            if isinstance(raw, str) and raw:
                p = Path(raw).expanduser()
                return p if p.is_absolute() else self.base_dir / p
            return self.problem(key, f"expected a file path, got {_show(raw)}")
        if tp is Location:
            if isinstance(raw, str) and raw:
                loc = Location(raw)
                if loc.is_url:
                    return loc
                p = Path(raw).expanduser()
                return Location(p if p.is_absolute() else self.base_dir / p)
            return self.problem(key, f"expected a file path or a URL, got {_show(raw)}")
        raise TypeError(f"unsupported config type {tp}")

    def network(self, raw: object, key: str) -> object:
        try:
            if not isinstance(raw, str):
                raise ValueError
            return ipaddress.ip_network(raw, strict=False)
        except ValueError:
            return self.problem(key, f'expected a CIDR network such as "10.0.0.0/8" or '
                                     f'"::1/128", got {_show(raw)}')


def _show(raw: object) -> str:
    if isinstance(raw, str):
        return f'"{raw}"'
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, Mapping):
        return "a table"
    if isinstance(raw, list):
        return "a list"
    return str(raw)


def _range_text(tp: type, meta: Mapping[str, Any]) -> str:
    word = "an integer" if tp is int else "a number"
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f"{word} from {lo} to {hi}"
    if lo is not None:
        return f"{word} >= {lo}"
    if hi is not None:
        return f"{word} <= {hi}"
    return word


def parse_override(text: str) -> tuple[list[str], object]:
    """``a.b.0.c=VALUE`` -> (["a", "b", "0", "c"], value); VALUE is TOML, else a plain string."""
    key, sep, value_text = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError([f"--set {text}: expected KEY=VALUE"])
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text
    return key.strip().split("."), value


def apply_override(raw: dict[str, Any], path: list[str], value: object) -> None:
    """Set a dotted key in the raw TOML document, creating tables on the way."""
    node: Any = raw
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(node, list):
            node = node[_index(node, part, path)]
            continue
        if part not in node:
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = path[-1]
    if isinstance(node, list):
        idx = int(last)
        if idx == len(node):
            node.append(value)
        else:
            node[_index(node, last, path)] = value
    else:
        node[last] = value


def _index(node: list[Any], part: str, path: list[str]) -> int:
    if not part.isdigit() or int(part) > len(node):
        raise ConfigError([f"--set {'.'.join(path)}: no element {part} in that list"])
    if int(part) == len(node):
        node.append({})
    return int(part)


def read_document(path: Path | None) -> dict[str, Any]:
    """The raw TOML document, with syntax errors and unknown sections as ConfigError."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 (TOML must be): byte {exc.object[exc.start]:#04x} "
                           f"at offset {exc.start}"]) from None
    check_sections(doc, str(path))
    return doc


def check_sections(doc: Mapping[str, Any], source: str) -> None:
    """ConfigError for top-level keys that are no server's section."""
    problems = []
    for name in doc:
        if name not in SECTIONS:
            hint = difflib.get_close_matches(name, SECTIONS, n=1)
            also = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(f"{source}: {name}: unknown section{also}")
    if problems:
        raise ConfigError(problems)


def load_section(cls: type, doc: Mapping[str, Any], section: str, *,
                 source: str = "<defaults>", base_dir: Path | None = None) -> Any:
    """Build `cls` from ``doc[section]`` (defaults when absent); raise ConfigError listing all."""
    loader = _Loader(source, base_dir or Path.cwd())
    result = loader.table(cls, doc.get(section, {}), section)
    if loader.problems or result is _MISSING:
        raise ConfigError(loader.problems or [f"{source}: {section}: invalid"])
    return result


def load(cls: type, section: str, path: Path | None = None,
         overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """Read `path` (or nothing), apply ``--set`` overrides, and build the section's config."""
    doc = read_document(path)
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] not in SECTIONS:
            raise ConfigError([f"--set {text}: unknown section {keys[0]!r}"])
        apply_override(doc, keys, value)
    source = str(path) if path else "<command line>"
    base_dir = path.parent if path else Path.cwd()
    return load_section(cls, doc, section, source=source, base_dir=base_dir)
