"""The three sources of settings: the YAML file, `AZDO_*` environment variables and overrides.

Each reader turns its source into `{setting key: Raw}`, keeping where each value was given
(`config.yaml:12:3: intervals.builds`, `env AZDO_LOOKBACK`, `--listen`). Which keys exist, which are
sections, lists or secrets, comes from the settings table; values are converted later, by the loader.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from exporter.config.files import CONFIG_FILE_LIMIT, FileError, read_text_file
from exporter.config.table import (
    BY_ENV,
    BY_KEY,
    NOT_IN_FILE,
    RESERVED_ENV_PREFIXES,
    RESERVED_KEYS,
    SECTION_ITEM,
    SECTIONS,
    SHORTHANDS,
    TOP_KEYS,
    secret_message,
)
from exporter.config.values import Secret, suggest

# The name users and tests know these warnings by (they predate the split of settings.py).
log = logging.getLogger("exporter.config.settings")

MAX_DEPTH = 20
"""Deepest nesting of the YAML file; the configuration itself needs 3 levels."""


@dataclass
class Raw:
    """One setting as given by one source; list settings hold (item, where) pairs."""

    value: Any
    where: str


# ------------------------------------------------------------------------------------------ the file


class _FileReader:
    """Walks the composed YAML document, keeping each value's location."""

    def __init__(self, path: str, errors: list[str]) -> None:
        self.path = path
        self.errors = errors
        self.values: dict[str, Raw] = {}

    def where(self, node: yaml.Node, label: str) -> str:
        return f"{self.path}:{node.start_mark.line + 1}:{node.start_mark.column + 1}: {label}"

    def error(self, node: yaml.Node, label: str, message: str) -> None:
        self.errors.append(f"{self.where(node, label)}: {message}")

    def mapping(self, node: yaml.Node, label: str) -> list[tuple[str, yaml.Node, yaml.Node]] | None:
        """(key, key node, value node) of a mapping, reporting duplicates and non-string keys."""
        if not isinstance(node, yaml.MappingNode):
            what = "a list" if isinstance(node, yaml.SequenceNode) else f"'{_scalar_text(node)}'"
            self.error(node, label or "top level", f"expected a mapping of keys to values, got {what}")
            return None
        seen: dict[str, yaml.Node] = {}
        out: list[tuple[str, yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node, label or "top level", "keys must be plain names")
                continue
            key = str(key_node.value)
            full = f"{label}.{key}" if label else key
            if key in seen:
                first = seen[key].start_mark.line + 1
                self.error(key_node, full, f"duplicate key (first given on line {first})")
                continue
            seen[key] = key_node
            out.append((key, key_node, value_node))
        return out

    def read(self, root: yaml.Node) -> bool:
        """Collect the settings; False when the top level is not a mapping."""
        entries = self.mapping(root, "")
        if entries is None:
            return False
        for key, key_node, value in entries:
            if key in RESERVED_KEYS:
                continue
            if key in SECTIONS:
                self.section(key, value)
            elif key in BY_KEY:
                self.setting(key, key_node, value)
            else:
                self.error(key_node, key, f"unknown key{suggest(key, TOP_KEYS)}")
        return True

    def section(self, section: str, node: yaml.Node) -> None:
        if section in SHORTHANDS and isinstance(node, yaml.ScalarNode):  # `auth: entra`
            self.setting(SHORTHANDS[section], node, node)
            return
        names = tuple(name for name in SECTIONS[section] if BY_KEY[f"{section}.{name}"].kind != "secret")
        item = SECTION_ITEM.get(section, "key")
        for key, key_node, value in self.mapping(node, section) or []:
            full = f"{section}.{key}"
            if full in BY_KEY:
                self.setting(full, key_node, value)
            elif full in NOT_IN_FILE:
                self.error(key_node, full, f"secrets are not read from the configuration file; {NOT_IN_FILE[full]}")
            else:
                listed = f"; {item}s: {', '.join(names)}" if item != "key" else ""
                self.error(key_node, full, f"unknown {item}{suggest(key, names)}{listed}")

    def setting(self, key: str, key_node: yaml.Node, node: yaml.Node) -> None:
        setting = BY_KEY[key]
        if setting.kind == "secret":
            self.error(key_node, key, secret_message(setting))
        elif setting.kind == "list":
            self.list(key, node)
        else:
            self.scalar(key, node)

    def scalar(self, name: str, node: yaml.Node) -> None:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, name, "expected a single value, not a list or mapping")
        elif _is_null(node):
            self.error(node, name, "no value given")
        else:
            self.values[name] = Raw(str(node.value), self.where(node, name))

    def list(self, name: str, node: yaml.Node) -> None:
        if isinstance(node, yaml.ScalarNode):
            items = [] if _is_null(node) else [(str(node.value), self.where(node, name))]
            self.values[name] = Raw(items, self.where(node, name))
        elif isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                label = f"{name}[{i}]"
                if not isinstance(item, yaml.ScalarNode) or _is_null(item):
                    self.error(item, label, "expected a plain value")
                else:
                    items.append((str(item.value), self.where(item, label)))
            self.values[name] = Raw(items, self.where(node, name))
        else:
            self.error(node, name, "expected a list")


def _is_null(node: yaml.Node) -> bool:
    return bool(node.tag == "tag:yaml.org,2002:null")


def _scalar_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "…"


def _too_deep(text: str) -> tuple[int, int] | None:
    """(line, column), 1-based, where the document nests deeper than MAX_DEPTH, or None.

    PyYAML's composer recurses once per level and fails with RecursionError (a traceback) some
    hundreds of levels down; its parser is a state machine, so the events are counted first.
    """
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            mark = event.start_mark
            if depth > MAX_DEPTH and mark is not None:
                return mark.line + 1, mark.column + 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def read_file(path: str, errors: list[str]) -> dict[str, Raw] | None:
    """Settings from the YAML file; None when it cannot be read or parsed."""
    try:
        text = read_text_file(path, CONFIG_FILE_LIMIT)
    except FileError as exc:
        if exc.reason == "it is not UTF-8 text":
            errors.append(f"{path}: the configuration file is not UTF-8 text")
        else:
            errors.append(f"{path}: cannot read the configuration file: {exc.reason}")
        return None
    try:
        deep = _too_deep(text)
        if deep is not None:
            errors.append(f"{path}:{deep[0]}:{deep[1]}: the file nests more than {MAX_DEPTH} levels "
                          "deep (a configuration needs 3)")
            return None
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        errors.append(_yaml_error(path, exc))
        return None
    except yaml.YAMLError as exc:
        errors.append(f"{path}: invalid YAML: {type(exc).__name__}")
        return None
    reader = _FileReader(path, errors)
    if root is not None and not reader.read(root):
        return None
    return reader.values


def _yaml_error(path: str, exc: yaml.MarkedYAMLError) -> str:
    """A YAML syntax error with its line and column, without quoting the file's content."""
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
    message = f"{where}: invalid YAML: {exc.problem or exc.context or 'syntax error'}"
    if exc.problem and exc.context and exc.context_mark:
        cm = exc.context_mark
        message += f" ({exc.context} at line {cm.line + 1}, column {cm.column + 1})"
    return message


# ------------------------------------------------------------------------------- environment, flags


def _split_list(text: str, where: str) -> list[tuple[str, str]]:
    return [(item, where) for item in (part.strip() for part in text.split(",")) if item]


def read_env(env: Mapping[str, str]) -> dict[str, Raw]:
    """Settings from `AZDO_*` variables; empty variables count as unset."""
    values: dict[str, Raw] = {}
    for var, setting in BY_ENV.items():
        text = env.get(var, "")
        if not text.strip():
            continue
        where = f"env {var}"
        if setting.kind == "list":
            values[setting.key] = Raw(_split_list(text, where), where)
        else:
            values[setting.key] = Raw(text if setting.kind == "secret" else text.strip(), where)
    for var in env:
        if var.startswith("AZDO_") and var not in BY_ENV and not var.startswith(RESERVED_ENV_PREFIXES):
            close = difflib.get_close_matches(var, list(BY_ENV), n=1, cutoff=0.85)
            if close:
                log.warning("ignoring unknown environment variable %s (did you mean %s?)", var, close[0])
    return values


def read_overrides(overrides: Mapping[str, Any], errors: list[str]) -> dict[str, Raw]:
    """Settings from command-line overrides: YAML keys (nested dicts or dotted names); None = not given."""
    values: dict[str, Raw] = {}

    def add(name: str, value: Any) -> None:
        setting = BY_KEY.get(name)
        where = setting.where_flag if setting else f"--{name.replace('_', '-')}"
        if value is None or name in RESERVED_KEYS:
            return
        if name in SECTIONS:
            if isinstance(value, Mapping):
                for key, sub in value.items():
                    add(f"{name}.{key}", sub)
            elif name in SHORTHANDS and isinstance(value, str):
                add(SHORTHANDS[name], value)
            else:
                errors.append(f"{where}: expected a mapping")
        elif setting is None:
            errors.append(f"{where}: unknown setting{suggest(name, [*TOP_KEYS, *BY_KEY])}")
        elif setting.kind == "secret":
            values[name] = Raw(value.reveal() if isinstance(value, Secret) else str(value), where)
        elif setting.kind == "list":
            if isinstance(value, str):
                values[name] = Raw(_split_list(value, where), where)
            elif isinstance(value, list | tuple | set | frozenset):
                values[name] = Raw([(str(v), where) for v in value], where)
            else:
                errors.append(f"{where}: expected a list")
        else:
            values[name] = Raw(value.strip() if isinstance(value, str) else value, where)

    for key, value in overrides.items():
        add(str(key).replace("-", "_"), value)
    return values
