"""grade: run the graders of `grade.steps` in order, then audit them on real text.

Each grader sees only the samples every earlier grader kept, writes its scores into
the rows, and drops some; a row's `dropped_by` is the reason of the first grader that
dropped it. grade.json counts, per grader, the samples it was shown and dropped
(`<grader>_in`, `<grader>_dropped`) and the drops by reason (`dropped_<reason>`),
plus the audit (`audit_*`, synthloop/graders/audit.py). The per-grader speed
(`<grader>_per_s`, samples per second) is returned for MLflow but kept out of
grade.json, which must not depend on the machine's speed.
"""

from __future__ import annotations

import time
from collections import Counter

from .. import io
from ..graders import audit, grader_class
from ..graders.base import GradeEnv
from ..graders.rules import preference
from ..progress import Progress
from .context import StageContext

DIGITS = {"self_ppl": 4, "ref_ppl": 4}  # digits each score is stored with (default 6)


def run(ctx: StageContext) -> dict[str, float]:
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    rows = io.read_rows(lay.synthetic(k))
    for row in rows:
        row["dropped_by"] = None
    env = GradeEnv(ctx)
    stats: dict[str, float] = {"n_graded": len(rows)}
    speed: dict[str, float] = {}
    prefs: dict[str, dict[str, float | None]] = {}
    bar = Progress(len(p.grade.steps), f"gen {k}: grading", unit="grader")
    for name in p.grade.steps:
        grader = grader_class(name)(env)
        alive = [r for r in rows if r["dropped_by"] is None]
        texts, ids = [r["text"] for r in alive], [r["id"] for r in alive]
        start = time.perf_counter()
        out = grader.grade(texts)
        speed[f"{name}_per_s"] = len(alive) / max(time.perf_counter() - start, 1e-9)
        for i, row in enumerate(alive):
            for key, values in out.scores.items():
                if values[i] is not None:
                    row["scores"][key] = round(float(values[i]), DIGITS.get(key, 6))
            row["dropped_by"] = out.reasons[i]
        stats[f"{name}_in"] = len(alive)
        stats[f"{name}_dropped"] = sum(r is not None for r in out.reasons)
        stats.update(out.stats)
        if grader.audit_key and p.grade.audit_size:
            synth = out.scores[grader.audit_key]
            real = grader.score(env.audit_texts)
            real_keep = grader.keep(env.audit_texts, real, out.rule)
            stats.update(
                audit.grader_stats(
                    name,
                    real,
                    synth,
                    preference(out.rule, real),
                    preference(out.rule, synth),
                    real_keep,
                    [r is None for r in out.reasons],
                )
            )
            prefs[name] = dict(zip(ids, preference(out.rule, synth).tolist()))
        bar.update(1, last=name, kept=sum(r["dropped_by"] is None for r in rows))
    bar.close()
    stats.update(audit.correlations(prefs))
    for row in rows:
        row["kept"] = row["dropped_by"] is None
    dropped = Counter(r["dropped_by"] for r in rows if not r["kept"])
    n_kept = len(rows) - sum(dropped.values())
    if n_kept == 0:
        why = ", ".join(f"{reason}: {n}" for reason, n in dropped.most_common())
        raise io.DataError(
            f"grade: generation {k} kept 0 of {len(rows)} samples ({why}); "
            "loosen grade.* (e.g. grade.min_words, grade.max_repetition, grade.self_rule) "
            "or take a grader out of grade.steps"
        )
    io.write_rows(lay.graded(k), rows)
    stats.update(
        {
            "n_kept": n_kept,
            "kept_share": n_kept / len(rows),
            **{f"dropped_{reason}": float(n) for reason, n in sorted(dropped.items())},
        }
    )
    kept_ppl = [r["scores"]["self_ppl"] for r in rows if r["kept"] and "self_ppl" in r["scores"]]
    if kept_ppl:
        stats["kept_self_ppl_mean"] = sum(kept_ppl) / len(kept_ppl)
    io.write_json(lay.grade_stats(k), stats)
    return {**stats, **speed}
