"""Causal LMs and the tokenizer: build, save (safetensors), load, score."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ..config import ComputeParams, ModelParams
from ..io import DataError, atomic_path, write_json
from ..resources import available_cpus

EOS = "<|endoftext|>"


def setup_torch(compute: ComputeParams) -> torch.device:
    """Thread count and device; called once per process before any model work."""
    threads = compute.threads or available_cpus()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return resolve_device(compute.device)


def resolve_device(name: str) -> torch.device:
    """compute.device (cpu, cuda or auto) as a torch device; cuda without CUDA is one line."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise DataError("compute.device = 'cuda' but no CUDA device is visible; set compute.device: cpu")
        return torch.device("cuda")
    return torch.device("cpu")


def batches_by_length(lengths: list[int], batch_size: int, equal: bool = False) -> list[list[int]]:
    """Indices in batches of at most batch_size, shortest first (ties in input order), so a
    batch needs little padding; equal=True: each batch holds one length only (no padding)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = [[]]
    for i in order:
        if equal and groups[-1] and lengths[groups[-1][-1]] != lengths[i]:
            groups.append([])
        groups[-1].append(i)
    return [g[s : s + batch_size] for g in groups if g for s in range(0, len(g), batch_size)]


# --- tokenizer ---------------------------------------------------------------

ROLES = "tokenizer_roles.json"  # beside tokenizer.json when the tokenizer came with a pretrained model


@dataclass(frozen=True)
class Tok:
    """A tokenizer and the ids the loop needs: `sep` leads every document (the prompt of bos
    sampling, the separator when packing), `stops` end a sample, `chat_template` (a pretrained
    instruct model's) builds template prompts. A scratch tokenizer has one special token,
    end-of-text, for all three roles; a pretrained one brings its own (SmolLM2: sep
    <|endoftext|>, stops <|endoftext|> and <|im_end|>)."""

    backend: Tokenizer
    sep: int
    stops: tuple[int, ...]
    chat_template: str | None = None

    @classmethod
    def scratch(cls, backend: Tokenizer) -> Tok:
        eos = backend.token_to_id(EOS)
        return cls(backend, eos, (eos,))

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def roles(self) -> dict | None:
        """What tokenizer_roles.json holds (None for a scratch tokenizer: tokenizer.json says it all)."""
        if self == Tok.scratch(self.backend):
            return None
        return {"sep": self.sep, "stops": list(self.stops), "chat_template": self.chat_template}

    def save(self, path: Path) -> None:
        """tokenizer.json at `path` (+ tokenizer_roles.json beside it), each written atomically."""
        with atomic_path(path) as tmp:
            self.backend.save(str(tmp))
        if self.roles() is not None:
            write_json(path.with_name(ROLES), self.roles())


def train_tokenizer(docs: list[str], vocab_size: int) -> Tok:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(docs, trainer)
    return Tok.scratch(tok)


def load_tokenizer(path: Path) -> Tok:
    """tokenizer.json and, when a pretrained model brought it, the tokenizer_roles.json beside it."""
    if not path.is_file():
        raise DataError(f"{path}: tokenizer missing; run the prepare stage first (synthloop stage prepare)")
    try:
        backend = Tokenizer.from_file(str(path))
        roles_file = path.with_name(ROLES)
        if not roles_file.is_file():
            return Tok.scratch(backend)
        roles = json.loads(roles_file.read_text(encoding="utf-8"))
        return Tok(backend, int(roles["sep"]), tuple(int(t) for t in roles["stops"]), roles.get("chat_template"))
    except Exception as exc:  # the tokenizers binding raises plain Exception on a bad file
        raise DataError(
            f"{path}: tokenizer file is unreadable ({str(exc)[:120]}); delete it and rerun prepare"
        ) from None


def eos_id(tok: Tok) -> int:
    """The token that leads every document (end-of-text for a scratch tokenizer)."""
    return tok.sep


def encode(tok: Tok, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.backend.encode_batch(texts, add_special_tokens=False)]


def decode(tok: Tok, ids: list[list[int]]) -> list[str]:
    return tok.backend.decode_batch(ids, skip_special_tokens=True)


def chat_prompts(tok: Tok, instructions: list[str]) -> list[list[int]]:
    """Token ids of each instruction as a user turn in the model's chat template, ready for the reply."""
    from transformers import PreTrainedTokenizerFast

    if not tok.chat_template:
        raise DataError("generate.prompt = template: model.source has no chat template; use prompt: bos or prefix")
    hf = PreTrainedTokenizerFast(tokenizer_object=tok.backend)
    texts = [
        hf.apply_chat_template(
            [{"role": "user", "content": text}],
            chat_template=tok.chat_template,
            add_generation_prompt=True,
            tokenize=False,
        )
        for text in instructions
    ]
    return encode(tok, texts)


def pack(tok: Tok, texts: list[str]) -> torch.Tensor:
    """One token stream: SEP doc SEP doc ... SEP (no padding anywhere)."""
    return pack_open(tok, texts)[0]


def pack_open(
    tok: Tok, texts: list[str], open_ended: list[bool] | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """pack, and which tokens are no training target (None: every one is): the separator after an
    open-ended document, a sample cut at generate.max_new_tokens, since that text did not end there.
    Trained as an end it would teach each generation that texts end sooner (round 1's defect)."""
    stream: list[int] = []
    skip: list[int] = []
    for ids, cut in zip(encode(tok, texts), open_ended or [False] * len(texts)):
        stream.append(tok.sep)
        stream.extend(ids)
        if cut:
            skip.append(len(stream))  # the separator that follows it
    stream.append(tok.sep)
    if not skip:
        return torch.tensor(stream, dtype=torch.long), None
    mask = torch.zeros(len(stream), dtype=torch.bool)
    mask[skip] = True
    return torch.tensor(stream, dtype=torch.long), mask


# --- models ------------------------------------------------------------------


def build_model(cfg: ModelParams, vocab_size: int, eos: int, seed: int) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if cfg.arch == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size,
            n_positions=cfg.context,
            n_embd=cfg.n_embd,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=eos,
            eos_token_id=eos,
            pad_token_id=eos,
        )
        return GPT2LMHeadModel(config)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.n_embd,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        intermediate_size=4 * cfg.n_embd,
        max_position_embeddings=cfg.context,
        tie_word_embeddings=True,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    return LlamaForCausalLM(config)


def save_model(model: torch.nn.Module, tokenizer_path: Path, out: Path, extra=None) -> None:
    """save_pretrained (safetensors) + the tokenizer files (copied byte for byte), atomically as one
    folder; `extra(folder)` writes more into it before it appears (a LoRA adapter)."""
    with atomic_path(out, directory=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copyfile(tokenizer_path, tmp / "tokenizer.json")
        if tokenizer_path.with_name(ROLES).is_file():
            shutil.copyfile(tokenizer_path.with_name(ROLES), tmp / ROLES)
        if extra is not None:
            extra(tmp)


def load_model(path: Path, device: torch.device) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    if not (path / "config.json").is_file():
        raise DataError(f"{path}: no model here; run the train stage for that generation first")
    try:  # safetensors only, never remote code: a model folder cannot run code when loaded
        model = AutoModelForCausalLM.from_pretrained(
            path, use_safetensors=True, local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # safetensors, json and config errors alike: the folder is unusable
        why = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: model folder is unreadable ({why}); delete it and rerun its train stage") from None
    return model.to(device).eval()


def context_length(model: torch.nn.Module) -> int:
    cfg = model.config
    return getattr(cfg, "n_positions", None) or cfg.max_position_embeddings


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- scoring -----------------------------------------------------------------

LOGITS_BUDGET = 1 << 27  # logits held at once when scoring (512 MB fp32): a 49k-type vocabulary needs chunks


def rows_within_budget(batch_size: int, width: int, vocab: int) -> int:
    """Rows per forward pass: batch_size, fewer when their logits (rows x width x vocab) would exceed
    LOGITS_BUDGET. The scratch profiles stay under it (their results do not change); SmolLM2 at
    batch 64 x 128 positions would hold 1.6 GB of logits, and as much again for their log-softmax."""
    return max(1, min(batch_size, LOGITS_BUDGET // max(1, width * vocab)))


def sequence_nll(
    model: torch.nn.Module, seqs: list[list[int]], eos: int, batch_size: int, device: torch.device
) -> list[tuple[float, int]]:
    """(summed NLL, token count) of each sequence given a leading EOS, in input order.

    Sequences longer than the model's context are scored on their first context-1 tokens.
    """
    return _scored(model, seqs, eos, batch_size, device, lambda nll, n: (float(nll.sum()), n))


def token_nll(
    model: torch.nn.Module, seqs: list[list[int]], eos: int, batch_size: int, device: torch.device
) -> list[list[float]]:
    """The NLL of each token of each sequence given a leading EOS (sequence_nll, token by token)."""
    return _scored(model, seqs, eos, batch_size, device, lambda nll, n: nll[:n].tolist())


@torch.no_grad()
def _scored(model, seqs: list[list[int]], eos: int, batch_size: int, device, reduce) -> list:
    """reduce(masked per-token NLL row, token count) of each sequence, in input order."""
    limit = context_length(model) - 1
    seqs = [s[:limit] for s in seqs]
    out: list = [reduce(torch.zeros(0), 0)] * len(seqs)
    widest = max((len(s) for s in seqs), default=0) + 1
    batch_size = rows_within_budget(batch_size, widest, model.config.vocab_size)
    for idx in batches_by_length([len(s) for s in seqs], batch_size):
        width = max(len(seqs[i]) for i in idx) + 1
        ids = torch.full((len(idx), width), eos, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, 1 : len(seqs[i]) + 1] = torch.tensor(seqs[i])
            mask[row, : len(seqs[i]) + 1] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none") * mask[:, 1:]
        for row, i in enumerate(idx):
            out[i] = reduce(nll[row], int(mask[row, 1:].sum()))
    return out


def bits_per_unit(ce: float, n_tokens: int, n_units: int) -> float:
    """Mean cross-entropy (nats per token) over n_tokens as bits per byte or character of the
    text they spell: total bits / units, the scale on which models with different tokenizers compare."""
    return ce * n_tokens / math.log(2) / max(n_units, 1)


def scored_text(tok: Tok, stream: torch.Tensor, n_tokens: int) -> str:
    """The text `stream_ce` scored: the targets stream[1 : n_tokens + 1] (separators spell nothing)."""
    return decode(tok, [stream[1 : n_tokens + 1].tolist()])[0]


@torch.no_grad()
def stream_ce(
    model: torch.nn.Module, stream: torch.Tensor, block: int, batch_size: int, device: torch.device
) -> tuple[float, float, int]:
    """Mean next-token cross-entropy and predictive entropy (nats) over non-overlapping
    blocks of a token stream, and the number of tokens scored."""
    n_blocks = (len(stream) - 1) // block
    if n_blocks < 1:
        raise DataError(f"held-out test split has {len(stream)} tokens, fewer than one block of {block}")
    x = stream[: n_blocks * block].view(n_blocks, block)
    y = stream[1 : n_blocks * block + 1].view(n_blocks, block)
    vocab = getattr(getattr(model, "config", None), "vocab_size", 0)
    batch_size = rows_within_budget(batch_size, block, vocab)
    total = entropy = 0.0
    for start in range(0, n_blocks, batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        logp = model(input_ids=xb).logits.float().log_softmax(-1)
        total -= float(logp.gather(-1, yb[..., None]).sum())
        entropy -= float(logp.exp().mul_(logp).sum())  # in place: two vocabulary-sized tensors at once, not three
    n = n_blocks * block
    return total / n, entropy / n, n
