"""Pretrained sources piece by piece: where model.source points, the tokenizer's roles, template
prompts, LoRA merging and bits per byte (the loop itself: tests/integration/test_pretrained_run.py)."""

from __future__ import annotations

import math
from random import Random
from types import SimpleNamespace

import pytest
import torch

from synthloop import prompts
from synthloop.config import SELF_LOCAL, GenerateParams
from synthloop.io import DataError
from synthloop.models import lm, source
from tests.llama import tiny_llama


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("llama") / "tiny")


def test_bits_per_byte_of_a_uniform_model_is_log2_vocab_over_bytes_per_token():
    class Uniform(torch.nn.Module):
        def forward(self, input_ids):
            return SimpleNamespace(logits=torch.zeros(*input_ids.shape, 256))

    stream = torch.arange(33) % 256
    ce, entropy, n = lm.stream_ce(Uniform(), stream, block=8, batch_size=2, device=torch.device("cpu"))
    assert n == 32 and ce == pytest.approx(math.log(256)) and entropy == pytest.approx(math.log(256))
    # 8 bits per token; 64 bytes for 32 tokens: 4 bits per byte; 128 characters: 2 bits per character
    assert lm.bits_per_unit(ce, n, 64) == pytest.approx(4.0)
    assert lm.bits_per_unit(ce, n, 128) == pytest.approx(2.0)


def test_scored_text_is_what_the_targets_spell(llama):
    tok = _tok(llama)
    docs = ["Once upon a time.", "The fox ran."]
    stream = lm.pack(tok, docs)
    n = len(stream) - 1
    assert lm.scored_text(tok, stream, n) == "".join(docs)  # separators spell nothing


def _tok(folder) -> lm.Tok:
    model, hf = source.load(source.resolve(str(folder), folder.parent))
    sep, stops = source.roles(hf, model)
    return lm.Tok(hf.backend_tokenizer, sep, stops, hf.chat_template)


def test_a_pretrained_tokenizer_keeps_its_own_roles_and_round_trips(llama, tmp_path):
    tok = _tok(llama)
    ids = {t: tok.backend.token_to_id(t) for t in ("<|endoftext|>", "<|im_end|>")}
    assert tok.sep == ids["<|endoftext|>"] and set(tok.stops) == set(ids.values())
    tok.save(tmp_path / "tokenizer.json")
    back = lm.load_tokenizer(tmp_path / "tokenizer.json")
    assert (back.sep, back.stops, back.chat_template) == (tok.sep, tok.stops, tok.chat_template)
    assert back.backend.encode("Once upon a time").ids == tok.backend.encode("Once upon a time").ids
    scratch = lm.train_tokenizer(["a fox and a crow"] * 20, 270)
    scratch.save(tmp_path / "s" / "tokenizer.json")
    assert not (tmp_path / "s" / lm.ROLES).exists()  # a scratch tokenizer: tokenizer.json says it all
    assert lm.load_tokenizer(tmp_path / "s" / "tokenizer.json").stops == (scratch.sep,)


def test_template_prompts_use_the_models_chat_template(llama):
    tok = _tok(llama)
    [ids] = lm.chat_prompts(tok, ["Write a short fairy tale about a fox."])
    text = tok.backend.decode(ids, skip_special_tokens=False)
    assert text == "<|im_start|>user\nWrite a short fairy tale about a fox.<|im_end|>\n<|im_start|>assistant\n"


def _gen(**kw) -> GenerateParams:
    base = dict(
        num_samples=4, max_new_tokens=8, temperature=1.0, top_k=0, top_p=1.0, prompt="template",
        prompt_tokens=4, template="t.txt", topics="topics.txt", batch_size=4,
    )  # fmt: skip
    return GenerateParams(**{**SELF_LOCAL, **base, **kw})


@pytest.mark.parametrize(
    "template,topics,message",
    [
        ("Write about {topic} in {style}.", "a fox\n", "unknown placeholder {style}; the only one is {topic}"),
        ("Write about {topic.", "a fox\n", "generate.template = t.txt: "),
        ("Write about {topic}.", "\n  \n", "generate.topics = topics.txt: no topics; write one per line"),
        (None, "a fox\n", "generate.template = t.txt: no such file"),
    ],
)
def test_bad_templates_are_one_line(tmp_path, template, topics, message):
    if template is not None:
        (tmp_path / "t.txt").write_text(template)
    (tmp_path / "topics.txt").write_text(topics)
    with pytest.raises(DataError) as err:
        prompts.read(tmp_path, _gen())
    assert message in str(err.value) and "\n" not in str(err.value)


def test_instructions_draw_topics_with_the_seed(tmp_path):
    (tmp_path / "t.txt").write_text("A tale of {topic}.\n")
    (tmp_path / "topics.txt").write_text("a fox\na crow\n\na king\n")
    template, topics = prompts.read(tmp_path, _gen())
    assert topics == ["a fox", "a crow", "a king"]
    a = prompts.instructions(template, topics, 20, Random(1))
    assert a == prompts.instructions(template, topics, 20, Random(1)) and len(set(a)) == 3
    assert a[0].startswith("A tale of ") and a[0].endswith(".")


def test_sources_that_cannot_work_are_one_line_each(llama, tmp_path):
    def line(src: str) -> str:
        with pytest.raises(DataError) as err:
            source.config(source.resolve(src, tmp_path))
        assert "\n" not in str(err.value)
        return str(err.value)

    assert "no such file" in line("models/nope.gguf")
    assert "no such file or folder" in line("./models/nope")
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf at all")
    assert "not a readable GGUF file (the file does not start with the GGUF magic bytes" in line("bad.gguf")
    # a header that promises tensors and metadata the file does not hold: a truncated download
    (tmp_path / "cut.gguf").write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (5).to_bytes(8, "little") * 2)
    assert "not a readable GGUF file" in line("cut.gguf")
    assert "offline" in line("HuggingFaceTB/SmolLM2-135M")  # tests run with HF_HUB_OFFLINE=1
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((llama / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    assert "no .safetensors weights" in line("pickled")
    assert source.config(source.resolve(str(llama), tmp_path)).model_type == "llama"


def test_merged_lora_model_gives_the_adapter_models_logits(llama, tmp_path):
    from peft import PeftModel

    from synthloop.config import load_params
    from synthloop.models.lora import add_adapters, check_targets, merge
    from tests.conftest import REPO

    cfg = load_params(REPO / "profiles" / "tiny.yaml").train.model_copy(
        update={"method": "lora", "lora_rank": 4, "lora_targets": ["q_proj", "v_proj", "down_proj"]}
    )
    model, _ = source.load(source.resolve(str(llama), tmp_path))
    peft_model = add_adapters(model, cfg)
    torch.manual_seed(0)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero (a no-op adapter): give it something to merge
            torch.nn.init.normal_(p, std=0.5)
    ids = torch.randint(0, 300, (2, 12))
    with torch.no_grad():
        adapted = peft_model(input_ids=ids).logits
    merged, write = merge(peft_model)
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, adapted, atol=1e-4)
    write(tmp_path)  # the adapter kept beside the merged model loads back onto the base
    base, _ = source.load(source.resolve(str(llama), tmp_path))
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, adapted, atol=1e-4)
    with pytest.raises(DataError, match="no module named c_attn; choose from k_proj, q_proj$"):
        check_targets(["c_attn"], {"q_proj": "Linear", "k_proj": "Linear", "embed_tokens": "Embedding"})
