"""The configuration tables of README.md (and docs/), generated from the settings table.

README.md holds one table per group of settings, each between `<!-- settings: GROUP -->` and
`<!-- /settings -->`; a page in docs/ may repeat a group the same way. `python -m
exporter.config.reference` rewrites them all; a unit test fails when a page and the table differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from exporter.config.table import GROUPS, SETTINGS, Setting

__all__ = ["render_group", "update_readme"]

_ROOT = Path(__file__).resolve().parents[2]
README = _ROOT / "README.md"
PAGES: tuple[Path, ...] = (README, _ROOT / "docs" / "radiator-and-digest.md")
"""The pages with settings blocks; README.md has every group."""
_BLOCK = re.compile(r"(<!-- settings: (?P<group>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /settings -->)", re.DOTALL)


def _code(text: str) -> str:
    return f"`{text}`"


def _default(setting: Setting) -> str:
    if setting.default is None:
        return setting.default_text
    if isinstance(setting.default, tuple):
        return _code("[" + ", ".join(f'"{item}"' for item in setting.default) + "]")
    return _code(setting.default)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_group(group: str) -> str:
    """The Markdown table of one group of settings (ends with a newline)."""
    settings = [s for s in SETTINGS if s.group == group]
    if not settings:
        raise ValueError(f"no settings in group '{group}'; groups: {', '.join(GROUPS)}")
    flags = any(s.flag for s in settings)
    head = ["key", "environment", *(["flag"] if flags else []), "default", "allowed", "meaning"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in settings:
        key = "— (environment only)" if s.kind == "secret" else _code(s.key)
        row = [key, _code(s.env), *([_code(s.flag) if s.flag else "—"] if flags else []), _default(s),
               s.allowed or "—", s.doc]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def update_readme(text: str) -> str:
    """`text` with every settings block replaced by its generated table."""
    return _BLOCK.sub(lambda m: f"{m.group(1)}{render_group(m.group('group'))}{m.group(4)}", text)


def groups_in(text: str) -> list[str]:
    """The groups that have a block in `text`, in order."""
    return [m.group("group") for m in _BLOCK.finditer(text)]


def main(argv: list[str]) -> int:
    missing = [g for g in GROUPS if g not in groups_in(README.read_text(encoding="utf-8"))]
    if missing:
        print(f"{README}: no block for the settings groups {', '.join(missing)}", file=sys.stderr)
        return 1
    for path in [Path(arg) for arg in argv] or PAGES:
        text = path.read_text(encoding="utf-8")
        updated = update_readme(text)
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            print(f"{path}: configuration tables updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
