"""The README's layout block names what ``fakesvc/`` holds, and nothing it does not."""

from __future__ import annotations

import re

from tests.processes import ROOT


def layout_block() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Layout\n\n```\n", 1)[1].split("```", 1)[0]


def test_every_module_and_package_of_the_package_is_in_the_readme_layout() -> None:
    named = set(re.findall(r"[\w.]+\.py|[\w]+/", layout_block()))
    package = ROOT / "fakesvc"
    present = {
        path.name + ("/" if path.is_dir() else "")
        for path in package.iterdir()
        if (path.suffix == ".py" and path.name != "__init__.py") or (path / "__init__.py").exists()
    }
    assert present - named == set(), "in fakesvc/ but not in the README's layout"
    top_level = {name for name in named if not name.startswith(("tests", "bench", "docs", "deploy", "k8s"))}
    assert top_level - present - {"fakesvc/", "supervisor.py", "locust/", "graphs/"} == set(), "named but absent"
