"""A pretrained generation 0: where `model.source` points, checked cheaply, then loaded.

A source is a `.gguf` file (transformers dequantizes it to fp32), a Hugging Face model folder
(safetensors weights only; remote code never runs) or a hub id (downloaded when online; offline
only from the local cache). `check` runs in the preflight: it reads the config alone (seconds)
and names the problem in one line; `load` runs once, in the prepare stage, which saves the model
as a plain safetensors folder (data/base) that every later stage loads in well under a second.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..io import DataError

log = logging.getLogger("synthloop")
KEY = "model.source"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class Source:
    kind: str  # gguf, folder or hub
    where: str  # the file, the folder (absolute), or the hub id
    given: str  # model.source (or generate.teacher) as the user wrote it
    key: str = KEY  # the params key that named it

    def describe(self) -> str:
        return f"{self.key} = {self.given}"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ) not in ("", "0")


def resolve(source: str, root: Path, key: str = KEY) -> Source:
    """What `model.source` (or `key`) names; a path that does not exist and is no hub id is one line."""
    path = (root / source).expanduser()
    if path.is_file() or source.endswith(".gguf"):
        if not path.is_file():
            raise DataError(f"{key} = {source}: no such file ({path}); run `make models` or fix the path")
        if path.suffix != ".gguf":
            raise DataError(f"{key} = {source}: a file, but not .gguf; point it at a .gguf file or a model folder")
        return Source("gguf", str(path.resolve()), source, key)
    if path.is_dir():
        return Source("folder", str(path.resolve()), source, key)
    looks_like_path = source.startswith(("/", ".", "~")) or source.count("/") > 1 or not HUB_ID.match(source)
    if looks_like_path:
        raise DataError(f"{key} = {source}: no such file or folder ({path}); fix the path")
    return Source("hub", source, source, key)


def _hub_cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json"), str)


def _why(exc: Exception, src: Source) -> str:
    text = str(exc).strip().replace(src.where, "the file").rstrip(".")
    return text.splitlines()[0][:160] if text else type(exc).__name__


def config(src: Source):
    """The model's transformers config (no weights); one DataError line when it cannot be read."""
    from transformers import AutoConfig

    try:
        if src.kind == "gguf":
            path = Path(src.where)
            return AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
        if src.kind == "folder":
            folder = Path(src.where)
            if not (folder / "config.json").is_file():
                raise DataError(
                    f"{src.describe()}: no config.json in {folder}; point it at a Hugging Face model folder"
                )
            if not any(folder.glob("*.safetensors")):
                raise DataError(
                    f"{src.describe()}: no .safetensors weights in {folder}; "
                    "only safetensors are loaded (pickled .bin weights can run code)"
                )
            return AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        if offline() and not _hub_cached(src.where):
            raise DataError(
                f"{src.describe()}: a hub id, and this machine is offline (HF_HUB_OFFLINE=1) without it in the cache; "
                "use a local .gguf file or model folder (`make models`), or run online once"
            )
        return AutoConfig.from_pretrained(src.where, local_files_only=offline(), trust_remote_code=False)
    except DataError:
        raise
    except Exception as exc:  # truncated or corrupt files, bad JSON, unknown architectures: the source is unusable
        if src.kind == "gguf":
            raise DataError(
                f"{src.describe()}: not a readable GGUF file ({_why(exc, src)}); it is truncated or corrupt: "
                "replace it (`make models`)"
            ) from None
        raise DataError(f"{src.describe()}: not a readable model ({_why(exc, src)}); replace it") from None


def skeleton(cfg):
    """A model of this config on the meta device: its modules and parameter count, no memory."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(cfg)


def context_of(cfg) -> int:
    return getattr(cfg, "n_positions", None) or cfg.max_position_embeddings


def load(src: Source):
    """(model in fp32 on the CPU, HF tokenizer) of the source; one DataError line when unusable."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    cfg = config(src)
    hf_logging.disable_progress_bar()  # its per-tensor bars flood a log; one line instead
    log.info(
        "%s: loading (%s%s)", src.describe(), src.kind, ", dequantizing to fp32: ~20-50 s" if src.kind == "gguf" else ""
    )
    try:
        if src.kind == "gguf":
            path = Path(src.where)
            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
            # a GGUF-loaded model is flagged quantized and refuses save_pretrained: the same weights in a plain model
            plain = cfg.__class__.from_dict({k: v for k, v in cfg.to_dict().items() if k != "quantization_config"})
            model = AutoModelForCausalLM.from_config(plain, dtype=torch.float32)
            model.load_state_dict(loaded.state_dict())
            model.generation_config = loaded.generation_config
        else:
            local = src.kind == "folder" or offline()
            tok = AutoTokenizer.from_pretrained(src.where, local_files_only=local, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                src.where, use_safetensors=True, local_files_only=local, trust_remote_code=False, dtype=torch.float32
            )
    except Exception as exc:
        raise DataError(f"{src.describe()}: cannot be loaded ({_why(exc, src)}); replace it") from None
    return model.eval(), tok


def roles(hf_tok, model) -> tuple[int, tuple[int, ...]]:
    """(sep, stops) of a pretrained tokenizer: documents are separated by its end-of-text token
    (<|endoftext|> where the vocabulary has one: what pretraining put between documents, else its
    eos); a sample ends at that separator or at any end token of the model's generation config."""
    vocab = hf_tok.get_vocab()
    eos = hf_tok.eos_token_id
    sep = vocab.get("<|endoftext|>", eos if eos is not None else hf_tok.bos_token_id)
    if sep is None:
        raise DataError(f"{KEY}: the tokenizer has no end-of-text, eos or bos token; use another model")
    ends = model.generation_config.eos_token_id
    ends = [ends] if isinstance(ends, int) else list(ends or [])
    return int(sep), tuple(dict.fromkeys([int(sep), *(int(t) for t in [eos, *ends] if t is not None)]))


def tok_of(hf_tok, model):
    """The loop's Tok of a pretrained tokenizer: its document separator, end tokens and chat template."""
    from . import lm

    sep, stops = roles(hf_tok, model)
    return lm.Tok(hf_tok.backend_tokenizer, sep, stops, getattr(hf_tok, "chat_template", None))
