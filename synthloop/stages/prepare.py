"""prepare: read the corpus, hold out a real test split, train the tokenizer (a scratch model)
or take a pretrained model.source's tokenizer and weights (data/base)."""

from __future__ import annotations

from pathlib import Path

from .. import faults, io
from ..data import documents, split_sizes
from ..io import DataError
from ..records import real_row
from .context import StageContext


def split_documents(docs: list[str], test_fraction: float, seed_rng) -> tuple[list[str], list[str]]:
    """Deterministic split by document: a seeded shuffle, the first share is the test set."""
    _, n_test = split_sizes(len(docs), test_fraction)
    order = list(range(len(docs)))
    seed_rng.shuffle(order)
    test_idx = set(order[:n_test])
    return ([d for i, d in enumerate(docs) if i not in test_idx], [d for i, d in enumerate(docs) if i in test_idx])


def run(ctx: StageContext) -> dict[str, float]:
    p, lay = ctx.params, ctx.layout
    train = documents(lay.root, p.data.corpus, "data.corpus", p.data.min_chars)
    if p.data.test_corpus:
        test = documents(lay.root, p.data.test_corpus, "data.test_corpus", p.data.min_chars)
    else:
        try:
            train, test = split_documents(train, p.data.test_fraction, ctx.rng("split"))
        except DataError as exc:
            raise DataError(f"{(lay.root / p.data.corpus).resolve()}: {exc}") from None
    from ..models import lm  # torch loads only once the corpus passed: a bad one is reported at once

    base = None
    if p.pretrained:
        base, tok, extra, origin = pretrained(ctx)
    else:
        tok, extra = lm.train_tokenizer(train, p.tokenizer.vocab_size), {}
        if tok.vocab_size < p.tokenizer.vocab_size:
            raise DataError(
                f"tokenizer.vocab_size = {p.tokenizer.vocab_size}, "
                f"but {(lay.root / p.data.corpus).resolve()} supports only "
                f"{tok.vocab_size} tokens; lower tokenizer.vocab_size or use a larger corpus"
            )
    n_train_tokens = sum(len(ids) + 1 for ids in lm.encode(tok, train))
    if n_train_tokens < p.train.block_size + 2:
        raise DataError(
            f"{p.data.corpus}: only {n_train_tokens} tokens, fewer than one training window "
            f"(train.block_size = {p.train.block_size}); use a larger corpus or lower train.block_size"
        )
    faults.point("mid:prepare")
    tok.save(lay.tokenizer)
    if base is not None:  # where it came from, on record in the data folder (and so in DVC's lock)
        lm.save_model(base, lay.tokenizer, lay.base)
        io.write_json(lay.base_source, {**origin, "tokenizer_md5": io.md5_file(lay.tokenizer)})
    io.write_rows(lay.real_train, (real_row(i, d) for i, d in enumerate(train)))
    io.write_rows(lay.real_test, (real_row(i, d) for i, d in enumerate(test)))
    stats = {
        "n_train_docs": len(train),
        "n_test_docs": len(test),
        "train_tokens": n_train_tokens,
        "vocab_size": tok.vocab_size,
        **extra,
    }
    io.write_json(lay.prepare_stats, stats)
    return stats


def pretrained(ctx: StageContext):
    """(model, Tok, stats, origin) of model.source: its own tokenizer, end tokens and chat template."""
    from ..models import lm, source

    src = source.resolve(ctx.params.model.source, ctx.layout.root)
    model, hf_tok = source.load(src)
    tok = source.tok_of(hf_tok, model)
    stats = {"n_params": lm.n_params(model), "context": lm.context_length(model)}
    origin = {"source": ctx.params.model.source, "kind": src.kind, "where": src.where}
    if src.kind == "gguf":
        origin["md5"] = io.md5_file(Path(src.where))
    return model, tok, stats, origin
