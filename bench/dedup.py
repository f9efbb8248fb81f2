"""Near-duplicate dedup at scale: 100k short documents through synthloop.graders.dedup.

    python bench/dedup.py [--docs 100000] [--words 100] [--planted 0.1]

Documents are ~100-word runs of random real sentences from the fairy tales; a share
of them (--planted) are near-duplicates of an earlier document: one copy with 1-3
words replaced, deleted or re-cased. The whole set goes through `dedup` with the
default knobs (threshold 0.8, 128 permutations, 3-word shingles), half of it as an
"earlier generation" and half as the new one, as the grade stage does. Reported:
wall time, planted duplicates caught (recall) and unplanted documents dropped.
Target: under 60 s for 100k documents on this 2-core machine.
Last line: RESULT dedup_100k_s=<s> recall=<planted caught> false_drop=<share of unplanted dropped>
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from synthloop.graders.dedup import dedup  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "fairytales" / "train.txt"


def documents(n: int, words: int, planted: float, seed: int = 0) -> tuple[list[str], set[int]]:
    text = CORPUS.read_text(encoding="utf-8")
    # sentences of 3-40 words, so a document is several of them: unplanted documents never repeat one another
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if 3 <= len(s.split()) <= 40]
    rng = random.Random(seed)
    docs: list[str] = []
    copies: set[int] = set()
    while len(docs) < n:
        if docs and rng.random() < planted:
            tokens = rng.choice(docs).split()
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(tokens))
                edit = rng.choice(("replace", "delete", "case"))
                if edit == "replace":
                    tokens[i] = rng.choice(rng.choice(sentences).split())
                elif edit == "delete" and len(tokens) > 1:
                    del tokens[i]
                else:
                    tokens[i] = tokens[i].upper()
            copies.add(len(docs))
            docs.append(" ".join(tokens))
            continue
        doc: list[str] = []
        while len(doc) < words:
            doc += rng.choice(sentences).split()
        docs.append(" ".join(doc))
    return docs, copies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--words", type=int, default=100)
    ap.add_argument("--planted", type=float, default=0.1)
    args = ap.parse_args()
    start = time.perf_counter()
    docs, copies = documents(args.docs, args.words, args.planted)
    print(f"built {len(docs)} documents ({len(copies)} planted near-duplicates) in {time.perf_counter() - start:.1f}s")
    half = len(docs) // 2
    start = time.perf_counter()
    reasons, _ = dedup(docs[half:], docs[:half], threshold=0.8, num_perm=128, shingle=3)
    seconds = time.perf_counter() - start
    new_copies = {i - half for i in copies if i >= half}
    caught = sum(reasons[i] is not None for i in new_copies)
    false = sum(r is not None for i, r in enumerate(reasons) if i not in new_copies)
    n_plain = len(reasons) - len(new_copies)
    print(
        f"dedup: {len(docs)} documents ({half} earlier + {len(reasons)} new) in {seconds:.1f}s "
        f"({len(docs) / seconds:,.0f} docs/s)"
    )
    print(
        f"dropped {sum(r is not None for r in reasons)}: planted caught {caught}/{len(new_copies)}, "
        f"unplanted dropped {false}/{n_plain}"
    )
    print(
        f"RESULT dedup_100k_s={seconds * 100_000 / len(docs):.1f} recall={caught / max(1, len(new_copies)):.3f} "
        f"false_drop={false / max(1, n_plain):.4f}"
    )


if __name__ == "__main__":
    main()
