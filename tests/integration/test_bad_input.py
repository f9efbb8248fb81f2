"""Every bad input gets one line naming the key or file, the documented exit code, and
leaves the project as it was. The table is docs/errors.md: each row here must match it.

Regenerate the doc after changing a message on purpose:
    SYNTHLOOP_WRITE_ERRORS_DOC=1 .venv/bin/python -m pytest tests/integration/test_bad_input.py
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from synthloop.cli import app
from tests.conftest import REPO, small_corpus, tiny_params, write_params

DOC = REPO / "docs" / "errors.md"
BIN = Path(sys.executable).parent
WRITE = os.environ.get("SYNTHLOOP_WRITE_ERRORS_DOC") == "1"
RESULTS: dict[str, tuple[int, str]] = {}


def set_key(dotted: str, value):
    def change(raw: dict) -> None:
        section, key = dotted.split(".", 1)
        raw[section][key] = value

    return change


def drop_key(dotted: str):
    def change(raw: dict) -> None:
        section, key = dotted.split(".", 1)
        del raw[section][key]

    return change


def corpus_file(name: str, content: bytes | str, key: str = "data.corpus", point_at: str | None = None, **more):
    """Write a corpus file into the project and point `key` at it (or at `point_at`), plus other data keys."""

    def change(raw: dict, root: Path) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        raw["data"][key.split(".")[1]] = point_at or name
        for k, v in more.items():
            raw["data"][k] = v

    return change


GOOD_DOCS = "\n\n".join(
    f"Once upon a time there was a king number {i} who ruled a quiet land by the sea." for i in range(60)
)


def pretrained(source: str, **train):
    """Point model.source at `source` (a pretrained loop: train.init continue), plus train keys."""

    def change(raw: dict) -> None:
        raw["model"]["source"] = source
        raw["train"].update({"init": "continue", **train})

    return change


def model_files(kind: str):
    """Files of a model.source case under the project: models/<...>."""

    def write(raw: dict, root: Path) -> None:
        models = root / "models"
        models.mkdir(parents=True, exist_ok=True)
        if kind == "garbage":
            (models / "bad.gguf").write_bytes(b"<html>Not Found</html>")
        elif kind == "truncated":  # a real GGUF cut short, as an interrupted download leaves it
            import gguf
            import numpy as np

            writer = gguf.GGUFWriter(models / "cut.gguf", "llama")
            writer.add_tensor("token_embd.weight", np.zeros((64, 32), dtype=np.float32))
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
            data = (models / "cut.gguf").read_bytes()
            (models / "cut.gguf").write_bytes(data[: len(data) // 2])
        elif kind == "pickled":
            (models / "pickled").mkdir()
            (models / "pickled" / "config.json").write_text('{"model_type": "llama"}')
            (models / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04")
        else:  # a good tiny Llama folder (the case is elsewhere)
            from tests.llama import tiny_llama

            tiny_llama(models / "tiny")
            if kind == "template":
                (root / "t.txt").write_text("Write a fairy tale about {topic} in the style of {style}.")
                (root / "topics.txt").write_text("a fox\n")

    return write


TEMPLATE = {"prompt": "template", "template": "t.txt", "topics": "topics.txt"}
CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: nothing listens there on these machines


def http_teacher(**generate):
    """generate.* of a teacher behind an OpenAI-compatible server (prefix prompts), plus changes."""

    def change(raw: dict) -> None:
        teacher = {
            "source": "teacher",
            "backend": "http",
            "base_url": CLOSED_PORT,
            "model": "smollm2",
            "prompt": "prefix",
        }
        raw["generate"].update({**teacher, **generate})

    return change


def local_teacher(teacher: str):
    return lambda raw: raw["generate"].update(source="teacher", teacher=teacher)


# id -> (what, params change, files change, command, exit code)
CASES = {
    "params-missing": ("params file does not exist", None, None, ["run", "--params", "nope.yaml"], 2),
    "params-not-yaml": ("params.yaml is not YAML", None, "notyaml", ["run"], 2),
    "params-not-mapping": ("params.yaml is a list", None, "list", ["run"], 2),
    "unknown-key": ("a typo in a key", lambda r: r["mix"].update(real_fracton=0.5), None, ["run"], 2),
    "unknown-section": ("a typo in a section", lambda r: r.update(modle=r.pop("model")), None, ["run"], 2),
    "missing-key": ("a key left out", drop_key("train.lr"), None, ["run"], 2),
    "wrong-type": ("text where a number goes", set_key("train.steps", "many"), None, ["run"], 2),
    "lr-out-of-range": ("learning rate >= 1", set_key("train.lr", 5), None, ["run"], 2),
    "zero-samples": ("generate.num_samples = 0", set_key("generate.num_samples", 0), None, ["run"], 2),
    "bad-strategy": ("a strategy that does not exist", set_key("mix.strategy", "mixup"), None, ["run"], 2),
    "bad-self-rule": ("a self-grading rule that does not exist", set_key("grade.self_rule", "best"), None, ["run"], 2),
    "bad-grader": ("a grader that does not exist", set_key("grade.steps", ["filters", "magic"]), None, ["run"], 2),
    "judge-no-url": (
        "an HTTP judge without a base URL",
        lambda r: (set_key("grade.steps", ["filters", "judge"])(r), set_key("grade.judge_backend", "http")(r)),
        None,
        ["run"],
        2,
    ),
    "zero-generations": ("loop.chain empty (0 generations)", set_key("loop.chain", {}), None, ["run"], 2),
    "huge-generations": (
        "101 generations",
        set_key("loop.chain", {str(k): k - 1 for k in range(1, 102)}),
        None,
        ["run"],
        2,
    ),
    "chain-int-keys": ("loop.chain with unquoted keys", set_key("loop.chain", {1: 0}), None, ["run"], 2),
    "sample-above-context": (
        "samples longer than the model context",
        set_key("generate.max_new_tokens", 500),
        None,
        ["run"],
        2,
    ),
    "block-above-context": (
        "training block longer than the context",
        set_key("train.block_size", 128),
        None,
        ["run"],
        2,
    ),
    "eval-block-above-context": (
        "evaluation window longer than the context",
        set_key("evaluate.block_size", 128),
        None,
        ["run"],
        2,
    ),
    "eval-block-above-train": (
        "evaluation window longer than a scratch model's training blocks",
        set_key("evaluate.block_size", 64),
        None,
        ["run"],
        2,
    ),
    "heads-divide": ("n_embd not divisible by n_head", set_key("model.n_head", 3), None, ["run"], 2),
    "warmup-too-long": ("warmup >= steps", set_key("train.warmup_steps", 30), None, ["run"], 2),
    "micro-batch": ("micro_batch does not divide batch_size", set_key("train.micro_batch", 3), None, ["run"], 2),
    "train-processes": (
        "train_processes does not divide batch_size",
        set_key("compute.train_processes", 3),
        None,
        ["run"],
        2,
    ),
    "band-order": ("self band low >= high", set_key("grade.self_band_low", 0.95), None, ["run"], 2),
    "path-escape": ("an output folder outside the project", set_key("paths.gens", "../elsewhere"), None, ["run"], 2),
    "path-absolute": ("an absolute output folder", set_key("paths.data", "/tmp/data"), None, ["run"], 2),
    "stage-unknown": ("a stage that does not exist", None, None, ["stage", "polish"], 2),
    "stage-gen-range": ("--gen outside loop.chain", None, None, ["stage", "train", "--gen", "9"], 2),
    "corpus-missing": ("corpus file missing", set_key("data.corpus", "missing.txt"), None, ["stage", "prepare"], 1),
    "corpus-empty": ("corpus file empty", None, corpus_file("c/empty.txt", ""), ["stage", "prepare"], 1),
    "corpus-dir-no-text": (
        "a folder without .txt files",
        None,
        corpus_file("c/dir/readme.md", "# hi", point_at="c/dir"),
        ["stage", "prepare"],
        1,
    ),
    "corpus-binary": (
        "a binary corpus",
        None,
        corpus_file("c/bin.txt", b"\x00\x01\x02" * 100),
        ["stage", "prepare"],
        1,
    ),
    "corpus-not-utf8": (
        "a Latin-1 corpus",
        None,
        corpus_file("c/latin1.txt", "caf\xe9 au lait\n".encode("latin-1") * 20),
        ["stage", "prepare"],
        1,
    ),
    "corpus-one-line": (
        "one giant line, no test corpus",
        None,
        corpus_file("c/line.txt", "word " * 200_000, test_corpus=None),
        ["stage", "prepare"],
        1,
    ),
    "corpus-too-few-docs": (
        "two documents, no test corpus",
        None,
        corpus_file("c/two.txt", GOOD_DOCS.split("\n\n")[0] + "\n\n" + GOOD_DOCS.split("\n\n")[1], test_corpus=None),
        ["stage", "prepare"],
        1,
    ),
    "corpus-short-docs": (
        "no document reaches data.min_chars",
        set_key("data.min_chars", 100_000),
        None,
        ["stage", "prepare"],
        1,
    ),
    "corpus-tiny": (
        "fewer tokens than one training window",
        lambda r: (set_key("tokenizer.vocab_size", 260)(r), set_key("data.min_chars", 10)(r)),
        corpus_file("c/tiny.txt", "A fox met a crow."),
        ["stage", "prepare"],
        1,
    ),
    "jsonl-bad-line": (
        "a .jsonl line that is not JSON",
        None,
        corpus_file("c/bad.jsonl", '{"text": "fine"}\nnot json\n'),
        ["stage", "prepare"],
        1,
    ),
    "jsonl-no-text": (
        "a .jsonl row without 'text'",
        None,
        corpus_file("c/notext.jsonl", '{"body": "x"}\n'),
        ["stage", "prepare"],
        1,
    ),
    "vocab-too-large": (
        "a vocabulary the corpus cannot fill",
        set_key("tokenizer.vocab_size", 60000),
        None,
        ["stage", "prepare"],
        1,
    ),
    "source-missing": (
        "model.source: a file that does not exist",
        pretrained("models/nope.gguf"),
        None,
        ["run"],
        1,
    ),
    "source-not-gguf": (
        "model.source: a .gguf that is not one (an error page)",
        pretrained("models/bad.gguf"),
        model_files("garbage"),
        ["run"],
        1,
    ),
    "source-truncated": (
        "model.source: a GGUF cut short",
        pretrained("models/cut.gguf"),
        model_files("truncated"),
        ["run"],
        1,
    ),
    "source-hub-offline": (
        "model.source: a hub id while offline",
        pretrained("HuggingFaceTB/SmolLM2-135M-Instruct"),
        None,
        ["run"],
        1,
    ),
    "source-no-safetensors": (
        "model.source: a folder with pickled weights only",
        pretrained("models/pickled"),
        model_files("pickled"),
        ["run"],
        1,
    ),
    "lora-target-missing": (
        "train.lora_targets names a module the model lacks",
        pretrained("models/tiny", method="lora", lora_targets=["q_proj", "c_attn"]),
        model_files("tiny"),
        ["run"],
        1,
    ),
    "template-placeholder": (
        "a prompt template with an unknown placeholder",
        lambda r: (pretrained("models/tiny")(r), r["generate"].update(TEMPLATE)),
        model_files("template"),
        ["run"],
        1,
    ),
    "http-self": ("the http backend for the self loop", http_teacher(source="self"), None, ["run"], 2),
    "http-bos": ("a bos prompt sent to a server", http_teacher(prompt="bos"), None, ["run"], 2),
    "teacher-unset": ("source teacher without generate.teacher", local_teacher(None), None, ["run"], 2),
    "teacher-missing": (
        "generate.teacher: a file that does not exist",
        local_teacher("models/nope.gguf"),
        None,
        ["run"],
        1,
    ),
    "endpoint-refused": ("generate.base_url: nothing listens there", http_teacher(), None, ["run"], 1),
    "api-key-unset": (
        "generate.api_key_env names an unset variable",
        http_teacher(api_key_env="SYNTHLOOP_UNSET_KEY"),
        None,
        ["run"],
        1,
    ),
    "vllm-no-cuda": (
        "generate.backend = vllm on a machine without CUDA",
        lambda raw: raw["generate"].update(backend="vllm"),
        None,
        ["run"],
        1,
    ),
    "tokenizer-missing": ("a stage run before prepare", None, None, ["stage", "train", "--gen", "0"], 1),
    "model-missing": (
        "a stage whose input model was never trained",
        None,
        "tokenizer",
        ["stage", "evaluate", "--gen", "0"],
        1,
    ),
    "model-corrupt": ("a truncated model file", None, "corrupt-model", ["stage", "evaluate", "--gen", "0"], 1),
    "tokenizer-corrupt": ("a garbled tokenizer.json", None, "corrupt-tokenizer", ["stage", "train", "--gen", "0"], 1),
    "sweep-unknown-arm-key": ("a sweep arm with a typo", None, "sweep", ["sweep", "bad.yaml"], 2),
    "sweep-no-spec": ("sweep with nothing to sweep", None, None, ["sweep"], 2),
    "sweep-compare-unknown-arm": (
        "a sweep's compare naming an arm it lacks",
        None,
        "sweep-compare",
        ["sweep", "bad.yaml"],
        2,
    ),
    "report-no-summary": ("report on a missing summary", None, None, ["report", "nothing/summary.csv"], 1),
    "report-pair-unknown-arm": (
        "report --pair naming an arm the summary lacks",
        None,
        "summary",
        ["report", "summary.csv", "--pair", "accumulate:replce"],
        1,
    ),
    "report-pair-no-colon": ("report --pair without A:B", None, "summary", ["report", "summary.csv", "--pair", "x"], 1),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return small_corpus(tmp_path_factory.mktemp("corpus"), n_train=80, n_test=10)


def snapshot(root: Path) -> dict[str, int]:
    skip = {".mlflow", ".prefect", ".hf"}
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and not skip & set(p.relative_to(root).parts)
    }


def prepare_files(kind: str, root: Path, raw: dict) -> None:
    params = root / "params.yaml"
    if kind == "notyaml":
        params.write_text("data: [unclosed\n  - x: {")
    elif kind == "list":
        params.write_text("- data\n- model\n")
    elif kind in ("corrupt-model", "corrupt-tokenizer", "tokenizer"):
        (root / "data").mkdir()
        if kind == "corrupt-tokenizer":
            (root / "data" / "tokenizer.json").write_text('{"version": "1.0", "model": ')
        else:
            from synthloop.models import lm

            lm.train_tokenizer([GOOD_DOCS], 300).save(root / "data" / "tokenizer.json")
        if kind == "tokenizer":
            return
        model = root / "gens" / "0" / "model"
        model.mkdir(parents=True)
        (model / "config.json").write_text('{"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2}')
        (model / "model.safetensors").write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')
        (root / "data" / "test.jsonl").write_text('{"text": "x"}\n')
        (root / "gens" / "0" / "train_set.jsonl").write_text('{"text": "x", "source": "real"}\n')
    elif kind == "summary":
        rows = [
            f"{a},{seed},{a}-s{seed},{g},{4 + g * (a == 'replace')}"
            for a in ("replace", "accumulate")
            for seed in (0, 1)
            for g in (0, 1)
        ]
        (root / "summary.csv").write_text("arm,seed,run,generation,test_ce\n" + "\n".join(rows) + "\n")
    elif kind == "sweep-compare":
        spec = {"name": "bad", "seeds": [0], "arms": {"a": {}, "b": {}}, "compare": [["a", "c"]]}
        (root / "bad.yaml").write_text(yaml.safe_dump(spec))
    elif kind == "sweep":
        (root / "bad.yaml").write_text(
            yaml.safe_dump({"name": "bad", "seeds": [0], "arms": {"a": {"mix.stratgy": "x"}}})
        )


def case_project(case: str, corpus, root: Path, params_name: str | None = "params.yaml") -> dict:
    """The tiny params of a bad-input case with its files under `root`, written to `root`/params_name
    (None: not written)."""
    _, change, files, _, _ = CASES[case]
    raw = tiny_params(*corpus)
    root.mkdir(parents=True, exist_ok=True)
    if callable(files):
        files(raw, root)
    if change:
        change(raw)
    if params_name:
        write_params(root, raw, params_name)
    if isinstance(files, str):
        prepare_files(files, root, raw)
    return raw


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line_and_changes_nothing(case, corpus, tmp_path, monkeypatch):
    what, change, files, args, code = CASES[case]
    train, test = corpus
    root = tmp_path / "project"
    case_project(case, corpus, root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    before = snapshot(root)
    result = CliRunner().invoke(app, args)
    err = result.stderr.strip()
    assert result.exit_code == code, f"{case}: exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: not one line:\n{err}"
    assert "Traceback" not in result.output
    assert snapshot(root) == before, f"{case}: files changed"
    message = lines[0].replace(str(root), "<project>").replace(str(train.parent), "<corpus>")
    RESULTS[case] = (code, message)
    if not WRITE:
        expected = documented().get(case)
        assert expected == (code, message), f"{case}: docs/errors.md says {expected}, got {(code, message)}"


def test_disk_full_mid_write_loses_nothing(corpus, tmp_path):
    """A file-size limit makes the first big write fail (EFBIG), as a full disk would (ENOSPC)."""
    from tests.conftest import FAIRY

    root = tmp_path / "project"
    root.mkdir()
    write_params(root, tiny_params(FAIRY / "train.txt", FAIRY / "test.txt"))  # train.jsonl: ~5 MB
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PYTHONPATH": str(REPO)}

    def limit():  # above the MLflow database (~1 MB), below the real training split
        resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, 3_000_000))

    # warm the MLflow store without the limit (its database is larger than the limit)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlflow.tracking import MlflowClient; "
            f"MlflowClient('{env['MLFLOW_TRACKING_URI']}').search_experiments()",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [sys.executable, "-m", "synthloop", "stage", "prepare"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=300,
    )
    assert out.returncode == 1, out.stderr[-2000:]
    line = out.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"error: \S+: File too large; free space \(or raise the limit\) and rerun the same command: "
        r"finished stages are kept",
        line,
    ), line
    assert not list((root / "data").glob("*.jsonl")) or all(
        p.stat().st_size > 0 for p in (root / "data").glob("*.jsonl")
    )
    assert not list(root.rglob(".*.tmp"))  # the partial file was removed, not left behind
    RESULTS["disk-full"] = (1, re.sub(r"error: \S+:", "error: <project>/data/<file>:", line))


def test_dvc_lock_held_by_another_process_is_one_line(tmp_path):
    from dvc.repo import Repo

    from synthloop.io import DataError
    from synthloop.versioning import DvcResume

    Repo.init(str(tmp_path), no_scm=True)
    (tmp_path / "dvc.yaml").write_text("stages:\n  s:\n    cmd: echo hi\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom dvc.lock import make_lock\n"
            f"l = make_lock({str(tmp_path / '.dvc' / 'tmp' / 'lock')!r}); l.lock(); "
            "print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataError, match=r"DVC is busy .*wait for the other dvc process") as err:
            DvcResume(tmp_path).done("s", None)
        assert "\n" not in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def documented() -> dict[str, tuple[int, str]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `([a-z0-9-]+)` \| .* \| (\d) \| `(.*)` \|$", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), m.group(3).replace("\\|", "|"))
    return rows


def test_zz_docs_table_covers_every_case():
    if WRITE:
        write_doc()
    doc = documented()
    assert set(CASES) <= set(doc), f"undocumented: {set(CASES) - set(doc)}"
    assert len(doc) >= 30


def write_doc() -> None:
    head = DOC.read_text(encoding="utf-8").split("<!-- table -->")[0]
    lines = [head.rstrip() + "\n\n<!-- table -->", "| case | input | exit | message |", "|---|---|---|---|"]
    whats = {**{k: v[0] for k, v in CASES.items()}, "disk-full": "the disk fills up (file-size limit) mid-write"}
    merged = {**documented(), **RESULTS}  # a partial run (-k) keeps the other rows
    order = [*CASES, "disk-full"]
    for case, (code, message) in sorted(merged.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 999):
        lines.append(f"| `{case}` | {whats[case]} | {code} | `{message.replace('|', chr(92) + '|')}` |")
    DOC.write_text("\n".join(lines) + "\n", encoding="utf-8")


NEED_TOKENIZER = ("corpus-tiny", "vocab-too-large")  # found by prepare, inside the run (one line too)
DATA_CASES = [c for c, (_, _, _, args, _) in CASES.items() if args == ["stage", "prepare"] and c not in NEED_TOKENIZER]
WRITER_CASES = [
    "teacher-missing",
    "endpoint-refused",
    "api-key-unset",
    "vllm-no-cuda",
]  # met by the generate stage, or its preflight


@pytest.mark.parametrize("case", DATA_CASES)
def test_data_errors_reach_synthloop_run_as_one_line_before_prefect_starts(case, corpus, tmp_path):
    """The preflight: the stage's own line, exit 1, before Prefect (or anything else) starts, nothing written.
    (corpus-tiny and vocab-too-large need the tokenizer: prepare reports them, inside the run.)"""
    code = CASES[case][4]
    train, _ = corpus
    root = tmp_path / "project"
    case_project(case, corpus, root)
    before = snapshot(root)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    env.pop("PREFECT_HOME", None)  # as a user has it: Prefect would write <project>/.prefect once it starts
    out = subprocess.run(
        [str(BIN / "synthloop"), "run"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code and len(lines) == 1, out.stderr
    message = lines[0].replace(str(root), "<project>").replace(str(train.parent), "<corpus>")
    assert (code, message) == documented()[case]
    assert "Traceback" not in out.stderr + out.stdout and not (root / ".prefect").exists()
    assert snapshot(root) == before


@pytest.mark.slow
def test_an_error_inside_the_running_flow_is_one_line_without_a_traceback(corpus, tmp_path, ui):
    """grade@1 keeps no sample: Prefect's traceback and failed-state lines are silenced, one `error:` line is left."""
    train, test = corpus
    raw = tiny_params(
        train, test, loop={"chain": {"1": 0}}, grade={"min_words": 900}, train={"steps": 10, "warmup_steps": 2}
    )
    root = tmp_path / "project"
    root.mkdir()
    write_params(root, raw)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(REPO), "PREFECT_API_URL": ui.api}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = subprocess.run(
        [str(BIN / "synthloop"), "run"], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 1 and len(errors) == 1, out.stderr[-3000:]
    assert errors[0].startswith("error: grade: generation 1 kept 0 of")
    assert "Traceback" not in out.stderr and "Finished in state Failed" not in out.stderr
    assert "stage grade@1: start" in out.stderr  # it did get that far: the error came from inside the flow
