"""A loop that starts from a pretrained model (a tiny Llama folder standing in for SmolLM2):
its tokenizer, template prompts, LoRA on the base every generation, bits per byte; and full
fine-tuning that continues from a fine-tuned generation 0 on prefix prompts."""

from __future__ import annotations

import shutil

import pytest
import torch
from mlflow.tracking import MlflowClient

from synthloop import io
from synthloop.config import load_params
from synthloop.layout import Layout
from synthloop.models import lm
from synthloop.runner import run_stage
from synthloop.stages.table import plan
from tests.conftest import REPO, small_corpus, tiny_params, write_params
from tests.llama import tiny_llama


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    tiny_llama(root / "models" / "tiny")
    shutil.copytree(REPO / "prompts", root / "prompts")
    return root, small_corpus(root / "corpus", n_train=120, n_test=10)


def test_lora_on_the_base_with_template_prompts_through_the_loop_flow(project, ui):
    from flows.loop import loop

    root, (train, test) = project
    uri = f"sqlite:///{root / 'mlflow.db'}"
    raw = tiny_params(
        train,
        test,
        model={"source": "models/tiny"},
        loop={"chain": {"1": 0}},
        generate={"prompt": "template", "template": "prompts/fairytale.txt", "topics": "prompts/topics.txt"},
        train={"init": "base", "method": "lora", "steps0": 0, "lora_targets": ["q_proj", "v_proj"]},
        tracking={"uri": uri},
    )
    write_params(root, raw, "lora.yaml")
    state = loop("lora.yaml", root=str(root), return_state=True)
    assert state.is_completed(), state.message
    lay = Layout.of(load_params(root / "lora.yaml"), root)

    # prepare trained no tokenizer: the model's own, its end tokens and chat template, on record
    tok = lm.load_tokenizer(lay.tokenizer)
    assert tok.chat_template and len(tok.stops) == 2
    origin = io.read_json(lay.base_source)
    assert origin["kind"] == "folder" and origin["tokenizer_md5"] == io.md5_file(lay.tokenizer)
    # generation 0 is the base as it is (train.steps0: 0)
    assert io.weights_md5(lay.model(0)) == io.weights_md5(lay.base)

    rows = list(io.read_rows(lay.synthetic(1)))
    topics = (root / "prompts/topics.txt").read_text().splitlines()
    assert all(r["prompt"] in {f"Write a short fairy tale about {t}." for t in topics} for r in rows)
    assert len({r["prompt"] for r in rows}) > 5  # topics drawn per sample

    # the saved model is the base with the adapter merged; the adapter itself is kept beside it
    from peft import PeftModel

    merged = lm.load_model(lay.model(1), torch.device("cpu"))
    adapted = PeftModel.from_pretrained(lm.load_model(lay.base, torch.device("cpu")), lay.model(1) / "adapter")
    ids = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-4)
        assert not torch.allclose(
            merged(input_ids=ids).logits, lm.load_model(lay.base, torch.device("cpu"))(input_ids=ids).logits
        )

    summary = io.read_csv(lay.summary)
    assert [float(r["test_bpb"]) > 0 for r in summary] == [True, True]
    metrics = io.read_json(lay.metrics(1))
    assert metrics["test_bpb"] == pytest.approx(
        metrics["test_ce"] * metrics["test_tokens"] / torch.log(torch.tensor(2.0)).item()
        / len(lm.scored_text(tok, lm.pack(tok, [r["text"] for r in io.read_rows(lay.real_test)]),
                             int(metrics["test_tokens"])).encode()),
        rel=1e-6,
    )  # fmt: skip
    run = MlflowClient(uri).get_run(state.result())
    assert "test_bpb" in run.data.metrics


def test_full_fine_tuning_continues_from_a_fine_tuned_generation_0_on_prefix_prompts(project, tmp_path):
    _, (train, test) = project
    root = tmp_path
    shutil.copytree(project[0] / "models", root / "models")
    raw = tiny_params(
        train,
        test,
        model={"source": "models/tiny"},
        loop={"chain": {"1": 0}},
        generate={"prompt": "prefix", "prompt_tokens": 6, "num_samples": 16},
        train={"init": "continue", "method": "full", "steps0": 6, "steps": 6},
        tracking={"uri": f"sqlite:///{root / 'mlflow.db'}"},
    )
    params = load_params(write_params(root, raw))
    for stage, gen in plan(1):
        run_stage(stage.name, params, root, gen)
    lay = Layout.of(params, root)
    assert io.weights_md5(lay.model(0)) != io.weights_md5(lay.base)  # generation 0 was fine-tuned
    assert not (lay.model(1) / "adapter").exists()
    tok = lm.load_tokenizer(lay.tokenizer)
    real = [r["text"] for r in io.read_rows(lay.real_train)]
    rows = list(io.read_rows(lay.synthetic(1)))
    assert all(any(doc.startswith(r["prompt"]) for doc in real) for r in rows)  # 6 real tokens lead each
    assert all(len(lm.encode(tok, [r["prompt"]])[0]) == 6 for r in rows)
    assert io.read_json(lay.metrics(1))["test_bpb"] > 0


@pytest.mark.parametrize("case", ["source-missing", "source-not-gguf", "source-truncated", "source-hub-offline"])
def test_the_prepare_stage_reports_a_bad_source_with_the_preflights_line(case, project, tmp_path, monkeypatch):
    """`synthloop stage prepare` (what `dvc repro` runs) meets a bad model.source with docs/errors.md's line."""
    from typer.testing import CliRunner

    from synthloop.cli import app
    from tests.integration.test_bad_input import case_project, documented

    root = tmp_path / "p"
    case_project(case, project[1], root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = CliRunner().invoke(app, ["stage", "prepare"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().replace(str(root), "<project>") == documented()[case][1]
    assert not (root / "data").exists()


def test_a_fixed_local_teacher_writes_every_generation_for_a_scratch_student(project, ui):
    """generate.source: teacher, backend local: the tiny Llama (its own tokenizer and chat template)
    writes both generations' data for a scratch GPT-2; its tokens are counted, the budget stops it."""
    from flows.loop import loop

    root, (train, test) = project
    raw = tiny_params(
        train,
        test,
        loop={"chain": {"1": 0, "2": 1}},
        generate={
            "source": "teacher",
            "teacher": "models/tiny",
            "prompt": "template",
            "template": "prompts/fairytale.txt",
            "topics": "prompts/topics.txt",
            "batch_size": 16,
            "max_tokens_total": 1000,
            "price_per_mtok": [1.0, 3.0],
        },  # fmt: skip
        tracking={"uri": f"sqlite:///{root / 'mlflow.db'}"},
    )
    write_params(root, raw, "teacher.yaml")
    state = loop("teacher.yaml", root=str(root), return_state=True)
    assert state.is_completed(), state.message
    p = load_params(root / "teacher.yaml")
    lay = Layout.of(p, root)
    assert lm.load_tokenizer(lay.tokenizer).vocab_size == p.tokenizer.vocab_size  # the student's own BPE
    for k in (1, 2):
        rows = list(io.read_rows(lay.synthetic(k)))
        spent = io.read_json(lay.generate_stats(k))
        assert {r["writer"] for r in rows} == {"teacher:models/tiny"} and {r["parent"] for r in rows} == {None}
        # an untrained Llama rarely ends a sample: a batch (<= 16 prompts of one length) spends up to 16 x 48
        # tokens, so the budget of 1000 stops the generation after a few of the 64 prompts' batches
        assert spent["budget_hit"] == 1 and 16 < len(rows) < 64 and 1000 <= spent["completion_tokens"] < 1000 + 16 * 48
        assert spent["cost"] == pytest.approx((spent["prompt_tokens"] * 1.0 + spent["completion_tokens"] * 3.0) / 1e6)
    first, second = ([r["text"] for r in io.read_rows(lay.synthetic(k))] for k in (1, 2))
    assert first != second  # each generation draws its own seeds from the same teacher
