"""docs/params.md from the typed config: every key, its type, bounds and meaning (tests keep it current)."""

from __future__ import annotations

import typing

from .config import Params

HEAD = """# Params: every key

Generated from `synthloop/config.py` (the pydantic models are the source; `SYNTHLOOP_WRITE_PARAMS_DOC=1
pytest tests/unit/test_docs.py` rewrites this file). The dotted key is the params.yaml path, the
`dvc exp run -S` override, the Prefect form field and the MLflow param name. Values live in
params.yaml and the profiles; no knob has a Python default.
"""
BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _type(annotation) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "").replace("|", "\\|")


def _bounds(info) -> str:
    out = []
    for meta in info.metadata:
        for attr, sign in BOUNDS.items():
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sign} {value}")
    return ", ".join(out)


def params_markdown() -> str:
    lines = [HEAD]
    for section, field in Params.model_fields.items():
        model = field.annotation
        lines += [f"## {section}", "", "| key | type | bounds | meaning |", "|---|---|---|---|"]
        for key, info in model.model_fields.items():
            meaning = (info.description or "").replace("|", "\\|")
            lines.append(f"| `{section}.{key}` | {_type(info.annotation)} | {_bounds(info)} | {meaning} |")
        lines.append("")
    return "\n".join(lines)
