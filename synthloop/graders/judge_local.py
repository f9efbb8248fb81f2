"""The judge as a transformers causal LM in this process (safetensors only, no remote code,
no network): any folder `synthloop.models.lm.save_model` writes, or a downloaded HF model.

- `generate`: greedy-decode a short reply and parse it, as for an HTTP judge.
- `logits`: one forward pass over the prompt + "SCORE:"; the score is the expected
  value of the next-token distribution restricted to the digit tokens 1..10
  (renormalised). It always parses, so even a tiny from-scratch model, which never
  writes a well-formed verdict, yields a graded score: in effect, how much the model
  expects a high digit after this text. Such a score measures the judge model, not
  fluency; only a real instruction-tuned judge makes the rubric mean anything.
"""

from __future__ import annotations

from pathlib import Path

from ..io import DataError, require_model_folder
from ..models import lm
from .judge_prompt import REPLY_CHARS, Verdict, build_prompt, verdict


def _load_local(model_dir: Path, device: str):
    """Model + tokenizer from a local folder: safetensors weights, no remote code, no network."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    require_model_folder(model_dir, "grade.judge_model_dir")
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, use_safetensors=True, local_files_only=True, trust_remote_code=False
    )
    if (model_dir / "tokenizer_config.json").is_file():  # a downloaded HF model: its own special tokens
        tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    elif (model_dir / "tokenizer.json").is_file():  # a synthloop model: the bare tokenizers file
        tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    else:
        raise DataError(f"grade.judge_model_dir = {model_dir}: no tokenizer.json; save the tokenizer beside the model")
    return model.to(lm.resolve_device(device)).eval(), tok


def _single_id(tok, text: str, after: str) -> int | None:
    """The one token `text` adds after `after`, or None when it is not exactly one token."""
    base = tok.encode(after, add_special_tokens=False)
    full = tok.encode(after + text, add_special_tokens=False)
    return full[-1] if len(full) == len(base) + 1 and full[:-1] == base else None


def score_tokens(tok) -> tuple[str, dict[int, int]]:
    """The answer cue and {score: token id} for the logits mode.

    Vocabularies with " 7" as one token get the cue "SCORE:" (the digit comes with its
    space); byte-level vocabularies without, such as the small ones trained here, get
    "SCORE: " so the digit itself is the next token. 10 takes part only where it is one
    token; otherwise the scale tops out at 9 (a "1" that would begin "10" counts as 1).
    """
    for cue, form in (("SCORE:", " {}"), ("SCORE: ", "{}")):
        ids = {n: _single_id(tok, form.format(n), "SAMPLE>>>\n\n" + cue) for n in range(1, 11)}
        if all(ids[n] is not None for n in range(1, 10)):
            return cue, {n: i for n, i in ids.items() if i is not None}
    raise DataError(
        "grade.judge_mode = logits: the judge's tokenizer has no single-token digits 1-9; "
        "use grade.judge_mode: generate"
    )


class LocalJudge:
    """A causal LM in this process; work is batched (logits: one padded forward per batch)."""

    def __init__(self, model_dir: Path, mode: str, device: str = "cpu", batch_size: int = 32, reply_tokens: int = 24):
        self.model, self.tok = _load_local(model_dir, device)
        self.mode, self.batch_size, self.reply_tokens = mode, batch_size, reply_tokens
        cfg = self.model.config
        self.context = lm.context_length(self.model)
        eos = cfg.eos_token_id
        self.eos = eos[0] if isinstance(eos, list) else eos
        if self.eos is None:
            raise DataError(f"grade.judge_model_dir = {model_dir}: config.json has no eos_token_id")
        self.bos = cfg.bos_token_id if cfg.bos_token_id is not None else self.eos
        if mode == "logits":
            self.cue, self.digits = score_tokens(self.tok)

    def _ids(self, prompt: str, room: int) -> list[int]:
        """Prompt tokens, led by BOS unless the tokenizer adds one, cut to the last `room`.

        A prompt longer than the context keeps its end (the sample's end and the answer
        cue): the rubric goes first, which costs a tiny model nothing it could use.
        """
        ids = self.tok.encode(prompt)
        if self.bos is not None and (not ids or ids[0] != self.bos):
            ids = [self.bos, *ids]
        return ids[-room:]

    def judge(self, texts: list[str]) -> list[Verdict]:
        if not texts:
            return []
        return self._logits(texts) if self.mode == "logits" else self._generate(texts)

    def _logits(self, texts: list[str]) -> list[Verdict]:
        import torch

        seqs = [self._ids(build_prompt(t) + self.cue, self.context) for t in texts]
        digits = torch.tensor(list(self.digits.values()))
        values = torch.tensor(list(self.digits), dtype=torch.float32)
        device = self.model.device
        out: list[Verdict] = [Verdict(None, "error", "")] * len(texts)
        with torch.no_grad():
            for idx in lm.batches_by_length([len(s) for s in seqs], self.batch_size):  # little padding
                lens = [len(seqs[i]) for i in idx]
                ids = torch.full((len(idx), max(lens)), self.eos, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for row, i in enumerate(idx):  # right padding: positions of real tokens stay 0..n-1
                    ids[row, : lens[row]] = torch.tensor(seqs[i])
                    mask[row, : lens[row]] = 1
                last_pos = (torch.tensor(lens) - 1)[:, None].to(device)  # the vocab projection for these only
                logits = self.model(
                    input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=last_pos
                ).logits
                last = logits.reshape(len(idx), -1).float().cpu()
                probs = last[:, digits].softmax(-1)
                for row, i in enumerate(idx):
                    score = float((probs[row] * values).sum())
                    shown = " ".join(f"{n}:{p:.3f}" for n, p in zip(self.digits, probs[row].tolist()))
                    reply = f"expected {score:.4f} over p({shown})"
                    out[i] = Verdict(round(score, 4), "ok", reply[:REPLY_CHARS])
        return out

    def _generate(self, texts: list[str]) -> list[Verdict]:
        """Greedy replies with HF `generate`, batched by prompt length (no padding at all):
        one forward pass fills the prompt, which is most of a judge's tokens."""
        import torch

        room = self.context - self.reply_tokens
        if room < 8:
            raise DataError(
                f"grade.judge_model_dir: context {self.context} leaves no room for a "
                f"{self.reply_tokens}-token reply; use a model with a longer context"
            )
        prompts = [self._ids(build_prompt(t), room) for t in texts]
        replies = [""] * len(texts)
        with torch.no_grad():
            for rows in lm.batches_by_length([len(p) for p in prompts], self.batch_size, equal=True):
                ids = torch.tensor([prompts[i] for i in rows], device=self.model.device)
                out = self.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=False,
                    max_new_tokens=self.reply_tokens,
                    pad_token_id=self.eos,
                    eos_token_id=self.eos,
                )
                for i, new in zip(rows, out[:, ids.size(1) :].tolist()):  # the new tokens only
                    new = new[: new.index(self.eos)] if self.eos in new else new
                    replies[i] = self.tok.decode(new, skip_special_tokens=True)
        return [verdict(r) for r in replies]
