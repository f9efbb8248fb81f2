"""synthloop.config: the shipped profiles load; every user error is one line naming its key."""

from __future__ import annotations

import pytest
import yaml

from synthloop.config import STRATEGIES, ConfigError, Params, flatten, load_params, parse_params
from tests.conftest import REPO


def _set(raw: dict, dotted: str, value) -> dict:
    section, key = dotted.split(".")
    raw[section][key] = value
    return raw


@pytest.mark.parametrize(
    "name, generations",
    [
        ("params.yaml", 5),
        ("profiles/tiny.yaml", 2),
        ("profiles/science.yaml", 5),
        ("profiles/smollm2.yaml", 3),
        ("profiles/wikitext_smollm2.yaml", 3),
        ("profiles/teacher_http.yaml", 3),
    ],
)
def test_shipped_profiles_load(root, name, generations):
    params = load_params(root / name)
    assert isinstance(params, Params)
    assert params.loop.generations == generations


def test_profiles_define_the_same_keys(root):
    default, tiny = (flatten(load_params(root / n)) for n in ("params.yaml", "profiles/tiny.yaml"))
    assert default.keys() == tiny.keys()


def test_flatten_gives_dotted_keys(tiny):
    flat = flatten(tiny)
    assert flat["mix.real_fraction"] == tiny.mix.real_fraction
    assert flat["loop.chain"] == {"1": 0, "2": 1}
    assert all(k.count(".") == 1 for k in flat)
    assert len(flat) == sum(len(type(getattr(tiny, s)).model_fields) for s in Params.model_fields)


def _prefix_prompt(raw: dict) -> dict:
    return _set(_set(raw, "generate.prompt", "prefix"), "generate.max_new_tokens", 250)


# id: (mutation of params.yaml, substrings the one-line message must contain)
CASES = {
    "wrong type": (lambda r: _set(r, "model.n_layer", "two"), ["model.n_layer", "'two'"]),
    "out of range": (lambda r: _set(r, "mix.real_fraction", 1.5), ["mix.real_fraction", "1.5"]),
    "below minimum": (lambda r: _set(r, "train.steps", 0), ["train.steps"]),
    "unknown key, close": (
        lambda r: _set(r, "mix.real_fractoin", 0.1),
        ["unknown key 'mix.real_fractoin'", "did you mean 'mix.real_fraction'"],
    ),
    "unknown section, close": (lambda r: r.update(mixx={}) or r, ["unknown key 'mixx'", "did you mean 'mix'"]),
    "missing key": (lambda r: r["train"].pop("lr") and r, ["missing key 'train.lr'"]),
    "invalid strategy": (lambda r: _set(r, "mix.strategy", "blend"), ["mix.strategy", "'blend'", *STRATEGIES]),
    "invalid self_rule": (lambda r: _set(r, "grade.self_rule", "median"), ["grade.self_rule", "band"]),
    "chain with integer keys": (lambda r: _set(r, "loop.chain", {1: 0, 2: 1}), ["loop.chain", "quoted"]),
    "non-consecutive chain": (lambda r: _set(r, "loop.chain", {"1": 0, "3": 2}), ["loop.chain"]),
    "chain not starting at 0": (lambda r: _set(r, "loop.chain", {"1": 1}), ["loop.chain"]),
    "empty chain": (lambda r: _set(r, "loop.chain", {}), ["loop.chain"]),
    "block_size > context": (lambda r: _set(r, "train.block_size", 512), ["train.block_size", "model.context"]),
    "bos prompt + tokens > context": (
        lambda r: _set(r, "generate.max_new_tokens", 256),
        ["generate.max_new_tokens", "(1)"],
    ),
    "prefix prompt + tokens > context": (_prefix_prompt, ["generate.max_new_tokens", "(17)", "model.context"]),
    "heads do not divide": (lambda r: _set(r, "model.n_head", 3), ["model.n_embd", "model.n_head"]),
    "band reversed": (lambda r: _set(r, "grade.self_band_low", 0.95), ["grade.self_band_low"]),
    "unknown grader, close": (
        lambda r: _set(r, "grade.steps", ["filters", "dedupe"]),
        ["grade.steps", "unknown grader 'dedupe'", "did you mean 'dedup'?", "decontaminate"],
    ),
    "unknown grader, far": (
        lambda r: _set(r, "grade.steps", ["zzz"]),
        ["grade.steps", "unknown grader 'zzz'", "choose from"],
    ),
    "grader listed twice": (
        lambda r: _set(r, "grade.steps", ["self", "filters", "self"]),
        ["grade.steps", "'self' is listed twice"],
    ),
    "steps not a list": (lambda r: _set(r, "grade.steps", "filters"), ["grade.steps"]),
    "reference band reversed": (lambda r: _set(r, "grade.reference_low", 0.99), ["grade.reference_low"]),
    "reference band without real documents": (
        lambda r: _set(_set(r, "grade.steps", ["reference"]), "grade.audit_size", 0),
        ["grade.audit_size", "reference band"],
    ),
    "local judge without a model": (lambda r: _set(r, "grade.steps", ["judge"]), ["grade.judge_model_dir", "local"]),
    "http judge without a url": (
        lambda r: _set(_set(r, "grade.steps", ["judge"]), "grade.judge_backend", "http"),
        ["grade.judge_base_url"],
    ),
    "invalid verifier_rule": (lambda r: _set(r, "grade.verifier_rule", "best"), ["grade.verifier_rule", "resample"]),
}


@pytest.mark.parametrize("mutate, expected", CASES.values(), ids=CASES.keys())
def test_invalid_params_give_one_line_naming_the_key(raw, config_error, mutate, expected):
    message = config_error(mutate(raw))
    assert "\n" not in message
    assert "params.yaml: " in message  # prefixed by the file
    for part in expected:
        assert part in message


def test_far_unknown_key_has_no_hint(raw, config_error):
    message = config_error(_set(raw, "mix.zzzzzz", 1))
    assert "unknown key 'mix.zzzzzz'" in message and "did you mean" not in message


def test_context_boundary_is_allowed(raw, tmp_path):
    _set(raw, "generate.max_new_tokens", raw["model"]["context"] - 1)  # + 1 bos token = context
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_params(path).generate.max_new_tokens == raw["model"]["context"] - 1


@pytest.mark.parametrize(
    "content, expected",
    [
        ("paths: [data\n", "not valid YAML"),
        (b"\xff\xfe\x00binary", "not valid YAML"),
        ("just a sentence\n", "expected a mapping"),
        ("", "expected a mapping"),
    ],
)
def test_non_yaml_params_file(tmp_path, content, expected):
    path = tmp_path / "params.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="params file not found") as info:
        load_params(tmp_path / "nope.yaml")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "steps",
    [
        [],
        ["judge", "verifier", "self", "filters"],
        ["dedup", "decontaminate", "filters", "reference", "self", "verifier", "judge"],
    ],
)
def test_grade_steps_any_order_each_at_most_once(raw, tmp_path, steps):
    _set(raw, "grade.steps", steps)
    _set(raw, "grade.judge_model_dir", "gens/0/model")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_params(path).grade.steps == steps


def test_default_grading_is_filters_then_self_without_a_rule(root):
    grade = load_params(root / "params.yaml").grade
    assert grade.steps == ["filters", "self"] and grade.self_rule == "none" and grade.max_garbage == 1.0


@pytest.mark.parametrize(
    "generate, message",
    [
        ({"backend": "http", "source": "teacher", "prompt": "prefix"}, "needs generate.base_url and generate.model"),
        (
            {"backend": "http", "source": "teacher", "prompt": "prefix", "base_url": "localhost:8080", "model": "m"},
            "generate.base_url = 'localhost:8080': must start with http://",
        ),
        (
            {
                "backend": "http",
                "source": "teacher",
                "prompt": "prefix",
                "base_url": "http://h",
                "model": "m",
                "route": "chat",
            },
            "generate.route = chat does not fit generate.prompt = prefix",
        ),
        (
            {
                "backend": "http",
                "source": "teacher",
                "prompt": "prefix",
                "base_url": "http://h",
                "model": "m",
                "teacher": "t",
            },
            "generate.teacher is for the local and vllm backends",
        ),
        ({"teacher": "models/t.gguf"}, "generate.teacher is set but generate.source = self"),
        ({"price_per_mtok": [1.0]}, "generate.price_per_mtok"),
        ({"price_per_mtok": [1.0, -2.0]}, "prices must be >= 0"),
        ({"max_tokens_total": -1}, "generate.max_tokens_total = -1"),
    ],
)
def test_writer_params_fail_with_one_line(generate, message):
    raw = yaml.safe_load((REPO / "profiles" / "tiny.yaml").read_text())
    raw["generate"].update(generate)
    with pytest.raises(ConfigError) as info:
        parse_params(raw, "params.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_teacher_may_use_template_prompts_with_a_scratch_student():
    raw = yaml.safe_load((REPO / "profiles" / "tiny.yaml").read_text())
    raw["generate"].update(source="teacher", teacher="models/t.gguf", prompt="template", template="t", topics="u")
    assert parse_params(raw).generate.prompt == "template"
    raw["generate"].update(source="self", teacher=None)
    with pytest.raises(ConfigError, match="only a pretrained model.source or a teacher"):
        parse_params(raw)
