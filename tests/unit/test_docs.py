"""docs/params.md is generated from the config models and kept current."""

from __future__ import annotations

import os

from synthloop.config import Params
from synthloop.docs import params_markdown


def test_params_doc_is_current(root):
    path = root / "docs" / "params.md"
    if os.environ.get("SYNTHLOOP_WRITE_PARAMS_DOC") == "1":
        path.write_text(params_markdown(), encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    assert text == params_markdown(), "rerun with SYNTHLOOP_WRITE_PARAMS_DOC=1"
    for section, field in Params.model_fields.items():
        for key in field.annotation.model_fields:
            assert f"| `{section}.{key}` |" in text


def test_params_files_point_at_the_doc(root):
    for name in ("params.yaml", "profiles/tiny.yaml", "profiles/science.yaml"):
        assert "docs/params.md" in (root / name).read_text(encoding="utf-8")
    assert (root / "docs" / "params.md").is_file()
