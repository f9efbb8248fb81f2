"""Generation with vLLM's offline engine in this process (generate.backend: vllm), on a CUDA GPU.

Behind the `[gpu]` extra (`pip install 'synthloop[gpu]'`). Prompts go in as token ids and
samples come back as token ids (the loop's tokenizer decodes them, as in the local backend);
each request carries its own seed, so a sample does not depend on what it was batched with.
`check` runs in the preflight: without vLLM or without CUDA it is one line, before anything runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..config import GenerateParams
from ..io import DataError
from ..keys import derive_seed

KEY = "generate.backend"


def check() -> None:
    """One line when vLLM cannot run here: not installed, or no CUDA device."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise DataError(f"{KEY} = vllm needs a CUDA GPU and this machine has none; use backend local (or http)")
    if importlib.util.find_spec("vllm") is None:
        raise DataError(f"{KEY} = vllm: vLLM is not installed; pip install 'synthloop[gpu]'")


class Engine:
    """One vLLM engine over a model folder (safetensors), a GGUF file or a hub id."""

    def __init__(self, model: str, seed: int, max_len: int):
        check()
        from vllm import LLM

        self.llm = LLM(model=model, skip_tokenizer_init=True, seed=seed, max_model_len=max_len, dtype="auto")

    def sample(self, prompts: list[list[int]], cfg: GenerateParams, stops: Sequence[int], seed: int) -> list[list[int]]:
        """New token ids for each prompt, cut at the first stop token (the stop itself dropped)."""
        from vllm import SamplingParams, TokensPrompt

        params = [
            SamplingParams(
                n=1,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                top_k=cfg.top_k or -1,
                max_tokens=cfg.max_new_tokens,
                seed=derive_seed(seed, "request", i, bits=31),
                stop_token_ids=list(stops),
                detokenize=False,
            )
            for i in range(len(prompts))
        ]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        return [[t for t in out.outputs[0].token_ids if t not in stops] for out in outs]
