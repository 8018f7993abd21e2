"""The documentation stays true to the repository: the configuration reference is the one the
schema generates, the README stays a front page, and every relative link resolves."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_LIMIT = 10_240  # bytes

# [text](target) and ![alt](target), with an optional "title"; autolinks and references are not used.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def config_reference(name: str = "config_reference"):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def relative_links(path: Path) -> list[str]:
    """Link targets in a Markdown file outside code, without web links and pure anchors."""
    text = CODE_SPAN.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue  # http:, https:, mailto: ...; an anchor in the same page
        targets.append(target.split("#", 1)[0])
    return targets


def test_configuration_reference_is_up_to_date():
    generator = config_reference()
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))
    expected = generator.render(schema)
    current = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert current == expected, (
        "docs/configuration.md is out of date with workflow/schemas/config.schema.yaml: "
        "run `python docs/config_reference.py`"
    )


def test_family_table_is_generated_from_the_adapters():
    """docs/families.md is the family x stage matrix of tests/test_families.py, as the adapters declare it."""
    current = (DOCS / "families.md").read_text(encoding="utf-8")
    assert current == config_reference("family_matrix").render(), "run `python docs/family_matrix.py`"


def test_reference_documents_every_section_and_key():
    generator = config_reference()
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))
    page = generator.render(schema)
    for section in schema["properties"]:
        assert f"## `{section}`" in page
    for key in ("vqa.experiments.<experiment>.decoding", "foveated.sweeps.<sweep>.skip_when.winner",
                "datasets.<dataset>.boxes", "conditioning.defaults.recipe.mix_with"):  # fmt: skip
        assert f"`{key}`" in page


def test_render_follows_refs_and_shows_constraints():
    generator = config_reference()
    schema = {
        "$defs": {"size": {"type": "integer", "minimum": 1, "description": "how many"}},
        "required": ["top"],
        "properties": {
            "top": {
                "type": "object",
                "description": "a section",
                "properties": {
                    "n": {"$ref": "#/$defs/size"},
                    "mode": {"enum": ["a", "b"], "default": "a", "description": "x | y"},
                },
                "additionalProperties": {
                    "type": "object",
                    "properties": {"m": {"$ref": "#/$defs/size", "description": "own text"}},
                },
            }
        },
    }
    page = generator.render(schema)
    assert "## `top`" in page and "Required. A section." in page
    assert "| `top.n` | integer | ≥ 1 | how many |" in page
    assert "| `top.mode` | string | one of `a`, `b`; default `a` | x \\| y |" in page
    assert "| `top.<name>.m` | integer | ≥ 1 | own text |" in page


def test_readme_is_a_front_page():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes, more than {README_LIMIT}: move detail to docs/"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    missing = [target for target in relative_links(path) if not (path.parent / target).exists()]
    assert not missing, f"{path.relative_to(ROOT)} links to missing files: {missing}"
