"""Settings are documented: every I2V_* environment variable the code reads is in the README's settings table,
and every CLI flag of `generate` appears in the README."""
from __future__ import annotations

import re
from pathlib import Path

from i2v.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_every_environment_setting_is_documented():
    used = set()
    for source in (REPO / "i2v").rglob("*.py"):
        used |= set(re.findall(r"\bI2V_[A-Z_]+\b", source.read_text(encoding="utf-8")))
    assert used, "expected the engine to read some I2V_* settings"
    undocumented = sorted(name for name in used if f"`{name}`" not in README)
    assert not undocumented, f"add these settings to the README: {undocumented}"


def test_every_generate_flag_is_documented():
    parser = build_parser()
    generate = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "generate")[1]
    flags = {opt for action in generate._actions for opt in action.option_strings if opt.startswith("--")}
    flags -= {"--help", "--guidance"}  # --guidance is an alias of the documented --cfg
    missing = sorted(flag for flag in flags if flag not in README)
    assert not missing, f"document these flags in the README: {missing}"


def test_vram_doc_table_matches_the_planner():
    from i2v.backends.i2vgen_xl.backend import I2VGEN_XL_SPEC
    from i2v.planning.planner import decision_table
    from i2v.engine.presets import default_presets, presets_for_model

    doc = (REPO / "docs" / "VRAM.md").read_text(encoding="utf-8")
    presets = presets_for_model(default_presets(), I2VGEN_XL_SPEC.preset_key)
    assert decision_table(I2VGEN_XL_SPEC, presets, (8, 12, 16, 24, 48, 80)) in doc


def test_readme_command_lines_name_the_environments_python():
    """A bare ``python -m i2v`` is the system's Python, which has no torch or diffusers: copied from the README
    outside the venv it fails with "No module named …"."""
    bare = [line for line in README.splitlines() if re.search(r"(?<![/\w])python -m i2v", line)]
    assert not bare, f"write .venv/bin/python -m i2v in these README lines: {bare}"
