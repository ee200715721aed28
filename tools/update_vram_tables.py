"""Regenerate the decision tables in docs/VRAM.md from the planner (the docs tests fail when they disagree).

Run: ``.venv/bin/python tools/update_vram_tables.py``. Each table follows a heading line that names its model in
parentheses, e.g. ``#### Wan 2.1 I2V (Wan-AI/Wan2.1-I2V-14B-480P-Diffusers)``; the I2VGen-XL table follows the
"Decisions per preset and card (square image" heading. A model whose heading is missing is reported, not added.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from i2v.backends import spec_for  # noqa: E402
from i2v.engine.presets import default_presets, presets_for_model  # noqa: E402
from i2v.planning.planner import decision_table  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "VRAM.md"
I2VGEN_XL_CARDS = (8, 12, 16, 24, 48, 80)
TRANSFORMER_CARDS = (12, 16, 24, 40, 48, 80)
TABLE = re.compile(r"(\| card \(free GiB\) \|[^\n]*\n(?:\|[^\n]*\n)*)")


def replace_table_after(text: str, heading: str, table: str) -> str:
    start = text.index(heading)
    match = TABLE.search(text, start)
    return text[:match.start()] + table + "\n" + text[match.end():]


def main() -> int:
    text = DOC.read_text(encoding="utf-8")
    from i2v.backends.i2vgen_xl.backend import I2VGEN_XL_SPEC

    text = replace_table_after(text, "Decisions per preset and card (square image",
                               decision_table(I2VGEN_XL_SPEC, presets_for_model(default_presets(), I2VGEN_XL_SPEC.preset_key), I2VGEN_XL_CARDS))
    for heading in re.findall(r"^#### [^\n]*\(([\w.-]+/[\w.-]+)\)$", text, flags=re.M):
        spec = spec_for(heading)
        table = decision_table(spec, presets_for_model(default_presets(), spec.preset_key), TRANSFORMER_CARDS,
                               aspect=spec.native_size[0] / spec.native_size[1])
        text = replace_table_after(text, f"({heading})", table)
    DOC.write_text(text, encoding="utf-8")
    print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
