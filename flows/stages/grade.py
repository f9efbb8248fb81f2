"""grade: heuristic filters, then the model grades itself (perplexity under its writer)."""

from __future__ import annotations

import math
from collections import Counter

from .. import io
from ..graders.filters import filter_reason, self_keep
from ..metrics.text import repetition
from ..models import lm
from .context import StageContext


def run(ctx: StageContext) -> dict[str, float]:
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    rows = io.read_rows(lay.synthetic(k))
    for row in rows:
        row["scores"]["repetition"] = round(repetition(row["text"]), 6)
        row["dropped_by"] = filter_reason(row["text"], p.grade)
    passed = [r for r in rows if r["dropped_by"] is None]
    if passed:
        device = lm.setup_torch(p.compute)
        tok = lm.load_tokenizer(lay.tokenizer)
        model = lm.load_model(lay.model(k - 1), device)
        nll = lm.sequence_nll(model, lm.encode(tok, [r["text"] for r in passed]), lm.eos_id(tok),
                              p.generate.batch_size, device)
        ppl = [math.exp(s / max(n, 1)) for s, n in nll]
        for row, value, keep in zip(passed, ppl, self_keep(ppl, p.grade)):
            row["scores"]["self_ppl"] = round(value, 4)
            row["dropped_by"] = None if keep else f"self_{p.grade.self_rule}"
    for row in rows:
        row["kept"] = row["dropped_by"] is None
    dropped = Counter(r["dropped_by"] for r in rows if not r["kept"])
    n_kept = len(rows) - sum(dropped.values())
    if n_kept == 0:
        why = ", ".join(f"{reason}: {n}" for reason, n in dropped.most_common())
        raise io.DataError(f"grade: generation {k} kept 0 of {len(rows)} samples ({why}); "
                           "loosen grade.* (e.g. grade.min_words, grade.max_repetition, grade.self_rule)")
    io.write_rows(lay.graded(k), rows)
    kept_ppl = [r["scores"]["self_ppl"] for r in rows if r["kept"]]
    stats = {"n_graded": len(rows), "n_kept": n_kept, "kept_share": n_kept / len(rows),
             "kept_self_ppl_mean": sum(kept_ppl) / len(kept_ppl),
             **{f"dropped_{reason}": float(n) for reason, n in sorted(dropped.items())}}
    io.write_json(lay.grade_stats(k), stats)
    return stats
