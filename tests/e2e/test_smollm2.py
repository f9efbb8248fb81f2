"""The real pretrained model (`make models`: SmolLM2-135M-Instruct, Q4_1 GGUF) through one generation:
prepare dequantizes it and takes its tokenizer, generation 0 is the model as it is, generation 1
is LoRA on the base from chat-template prompts. A handful of samples and steps: the path, not the
science. `.ci/run` runs `make models` first; without the file the test fails and says so."""

from __future__ import annotations

import shutil

import pytest

from synthloop import io
from synthloop.config import load_params
from synthloop.layout import Layout
from synthloop.models import lm
from synthloop.runner import run_stage
from synthloop.stages.table import plan
from tests.conftest import REPO, small_corpus, write_params

pytestmark = pytest.mark.slow
GGUF = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_smollm2_runs_one_generation_and_writes_fairy_tales(tmp_path):
    assert GGUF.is_file(), f"{GGUF} missing: run `make models` (CI does)"
    train, test = small_corpus(tmp_path / "corpus", n_train=60, n_test=4)
    shutil.copytree(REPO / "prompts", tmp_path / "prompts")
    raw = load_params(REPO / "profiles" / "smollm2.yaml").model_dump(mode="json")
    raw["model"]["source"] = str(GGUF)
    raw["data"].update(corpus=str(train), test_corpus=str(test))
    raw["loop"]["chain"] = {"1": 0}
    raw["generate"].update(num_samples=4, max_new_tokens=48, batch_size=4)
    raw["grade"].update(audit_size=0)
    raw["mix"].update(train_size=4)
    raw["train"].update(steps=2, warmup_steps=1, batch_size=2, micro_batch=2, block_size=64, checkpoint_every=0)
    raw["evaluate"].update(num_samples=4, max_test_tokens=512)
    raw["tracking"].update(uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = load_params(write_params(tmp_path, raw))
    for stage, gen in plan(1):
        run_stage(stage.name, params, tmp_path, gen)
    lay = Layout.of(params, tmp_path)

    assert io.read_json(lay.base_source)["md5"] == "a1231443440b107ff29f02bdb38c9d0a"
    tok = lm.load_tokenizer(lay.tokenizer)
    assert tok.vocab_size == 49152 and tok.chat_template and len(tok.stops) == 2
    m0, m1 = io.read_json(lay.metrics(0)), io.read_json(lay.metrics(1))
    # a real pretrained model on real tales: far below the scratch models' ~4 bits per byte
    assert 0.5 < m0["test_bpb"] < 2.0 and m0["test_ppl"] < 60, m0
    assert abs(m1["test_bpb"] - m0["test_bpb"]) < 0.3  # two LoRA steps move it little
    rows = list(io.read_rows(lay.synthetic(1)))
    assert len(rows) == 4 and all(r["prompt"].startswith("Write a short fairy tale about ") for r in rows)
    words = sum(len(r["text"].split()) for r in rows)
    assert words > 60, rows  # real text, in words, not byte salad
    assert (lay.model(1) / "adapter" / "adapter_model.safetensors").is_file()
