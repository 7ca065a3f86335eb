"""Every module's DOCUMENTATION, EXAMPLES and RETURN are YAML that parses, and each documented option is in
the module's argument spec text: a cheap guard that fails in seconds where ansible-test sanity (minutes, at
the end of CI) would report one unparsable block as dozens of errors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

MODULES = sorted(path for path in (Path(__file__).resolve().parents[2] / "plugins" / "modules").glob("*.py")
                 if path.stem != "__init__")


def blocks(path: Path) -> dict:
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and \
                node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
            found[node.targets[0].id] = node.value.value
    return found


@pytest.mark.parametrize("path", MODULES, ids=[path.stem for path in MODULES])
def test_the_documentation_blocks_parse(path: Path) -> None:
    found = blocks(path)
    assert set(found) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}, (path.name, sorted(found))
    doc = yaml.safe_load(found["DOCUMENTATION"])
    assert doc["module"] == path.stem
    yaml.safe_load(found["EXAMPLES"])
    yaml.safe_load(found["RETURN"])
    source = path.read_text()
    for option in doc.get("options", {}):
        assert f"{option}=dict(" in source or f'"{option}":' in source, (path.name, option)
