"""Causal LMs and the tokenizer: build, save (safetensors), load, score."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ..config import ComputeParams, ModelParams
from ..io import DataError, atomic_path
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


def train_tokenizer(docs: list[str], vocab_size: int) -> Tokenizer:
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
    return tok


def load_tokenizer(path: Path) -> Tokenizer:
    if not path.is_file():
        raise DataError(f"{path}: tokenizer missing; run the prepare stage first (synthloop stage prepare)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers binding raises plain Exception on a bad file
        raise DataError(
            f"{path}: tokenizer file is unreadable ({str(exc)[:120]}); delete it and rerun prepare"
        ) from None


def eos_id(tok: Tokenizer) -> int:
    return tok.token_to_id(EOS)


def encode(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(texts)]


def decode(tok: Tokenizer, ids: list[list[int]]) -> list[str]:
    return tok.decode_batch(ids, skip_special_tokens=True)


def pack(tok: Tokenizer, texts: list[str]) -> torch.Tensor:
    """One token stream: EOS doc EOS doc ... (no padding anywhere)."""
    eos = eos_id(tok)
    stream: list[int] = []
    for ids in encode(tok, texts):
        stream.append(eos)
        stream.extend(ids)
    stream.append(eos)
    return torch.tensor(stream, dtype=torch.long)


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


def save_model(model: torch.nn.Module, tokenizer_path: Path, out: Path) -> None:
    """save_pretrained (safetensors) + the tokenizer, atomically as one folder."""
    with atomic_path(out, directory=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copyfile(tokenizer_path, tmp / "tokenizer.json")


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


@torch.no_grad()
def sequence_nll(
    model: torch.nn.Module, seqs: list[list[int]], eos: int, batch_size: int, device: torch.device
) -> list[tuple[float, int]]:
    """(summed NLL, token count) of each sequence given a leading EOS, in input order.

    Sequences longer than the model's context are scored on their first context-1 tokens.
    """
    limit = context_length(model) - 1
    seqs = [s[:limit] for s in seqs]
    out: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
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
            out[i] = (float(nll[row].sum()), int(mask[row, 1:].sum()))
    return out


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
    total = entropy = 0.0
    for start in range(0, n_blocks, batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        logp = model(input_ids=xb).logits.float().log_softmax(-1)
        total -= float(logp.gather(-1, yb[..., None]).sum())
        entropy -= float((logp.exp() * logp).sum())
    n = n_blocks * block
    return total / n, entropy / n, n
