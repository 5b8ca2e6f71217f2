"""Print the README's settings table from `service.settings.Settings` (one source of truth).

python scripts/settings_table.py          # print the table
python scripts/settings_table.py --check  # exit 1 if README.md's table differs
python scripts/settings_table.py --write  # replace README.md's table
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic_core import PydanticUndefined

from service.settings import Settings

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"


def table() -> str:
    rows = ["| Variable | Default | What it does |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None or default is PydanticUndefined else f"`{default}`"
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `PRISM_{name.upper()}` | {shown} | {description} |")
    return "\n".join(rows)


def readme_table() -> str:
    text = README.read_text()
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if readme_table() != table():
            print(
                "README.md's settings table is out of date: run scripts/settings_table.py --write",
                file=sys.stderr,
            )
            return 1
        return 0
    if "--write" in argv:
        text = README.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        README.write_text(f"{text[:start]}\n{table()}\n{text[end:]}")
        return 0
    print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
