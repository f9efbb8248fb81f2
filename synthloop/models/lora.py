"""LoRA through peft: adapters on the modules train.lora_targets names, merged for sampling and
evaluation (the saved model is a plain safetensors model), the adapter itself kept beside it
(model/adapter: adapter_config.json + adapter_model.safetensors, loadable with peft's
`PeftModel.from_pretrained(base, folder)`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import TrainParams
from ..io import DataError

ADAPTER = "adapter"


def module_names(model: torch.nn.Module) -> dict[str, str]:
    """The last name of every module -> its class name (q_proj -> Linear)."""
    return {name.rsplit(".", 1)[-1]: type(m).__name__ for name, m in model.named_modules() if name}


def check_targets(targets: list[str], names: dict[str, str]) -> None:
    """One line when a target module is not in the model (peft would say so only mid-run)."""
    missing = [t for t in targets if t not in names]
    if missing:
        layers = sorted(n for n, kind in names.items() if kind in ("Linear", "Conv1D")) or sorted(names)
        raise DataError(
            f"train.lora_targets: this model has no module named {', '.join(missing)}; choose from {', '.join(layers)}"
        )


def add_adapters(model: torch.nn.Module, cfg: TrainParams) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    check_targets(cfg.lora_targets, module_names(model))
    config = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft reads transformers' deprecated is_gradient_checkpointing: noise per stage
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def merge(peft_model) -> tuple[torch.nn.Module, Callable[[Path], None]]:
    """(the base model with the adapters merged in, a writer of the adapter into a model folder)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    state = {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}
    config = peft_model.peft_config["default"]

    def write(folder: Path) -> None:
        (folder / ADAPTER).mkdir()
        config.save_pretrained(folder / ADAPTER)
        save_file(state, folder / ADAPTER / "adapter_model.safetensors", metadata={"format": "pt"})

    return peft_model.merge_and_unload(), write
