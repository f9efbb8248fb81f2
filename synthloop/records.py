"""Row schemas: every document keeps its provenance from corpus to training set.

A row is a JSON object (one line of a .jsonl file):
  id          stable id: "real:<n>" or "g<k>:<n>"
  text        the document
  source      "real" or "synthetic"
  generation  0 for real text, k for text sampled to train generation k
  parent      generation of the model that wrote it (None for real text and a teacher's)
  writer      who wrote it: "gen<k-1>" (self) or "teacher:<generate.teacher | model@url>" (synthetic rows)
  prompt      the prompt it was sampled from ("" for bos)
  truncated   a sample cut at generate.max_new_tokens (its text did not end): packed for training
              without an end-of-text after it
  scores      grader outputs, e.g. {"self_ppl": 87.1, "repetition": 0.02}
  kept        the grader's decision (synthetic rows after grading)
  dropped_by  the first rule that dropped it, or None
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class Row(TypedDict, total=False):
    id: str
    text: str
    source: Literal["real", "synthetic"]
    generation: int
    parent: int | None
    writer: str
    prompt: str
    truncated: bool
    scores: dict[str, float]
    kept: bool
    dropped_by: str | None


def real_row(n: int, text: str) -> Row:
    return {
        "id": f"real:{n}",
        "text": text,
        "source": "real",
        "generation": 0,
        "parent": None,
        "prompt": "",
        "scores": {},
    }


def sample_row(
    gen: int,
    n: int,
    text: str,
    prompt: str,
    writer: str | None = None,
    parent: int | None = -1,
    truncated: bool = False,
) -> Row:
    """A synthetic row; by default written by generation gen-1's model (the self loop)."""
    return {
        "id": f"g{gen}:{n}",
        "text": text,
        "source": "synthetic",
        "generation": gen,
        "parent": gen - 1 if parent == -1 else parent,
        "writer": writer or f"gen{gen - 1}",
        "prompt": prompt,
        "truncated": truncated,
        "scores": {},
    }


def share(rows: list[Any], source: str) -> float:
    return sum(r["source"] == source for r in rows) / len(rows) if rows else 0.0
