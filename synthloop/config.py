"""Typed configuration: one pydantic model per params.yaml section.

Values live in params.yaml (or a profile); types, bounds and one-line
descriptions live here. Knobs have no Python defaults, so every number has one
home. The dotted key (``mix.real_fraction``) is the params.yaml path, the
``dvc exp run -S`` override and the MLflow param name.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .graders import REGISTRY

STRATEGIES = ("replace", "accumulate", "accumulate_subsample", "fixed_fraction", "dilution")
GRADERS = tuple(REGISTRY)  # grade.steps: every grader the grade stage knows


class ConfigError(ValueError):
    """A user error in params: one line naming the key and what to do."""


def _http_url(value: str | None) -> str | None:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


HttpUrl = Annotated[str | None, AfterValidator(_http_url)]  # a server's base URL, or null


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsParams(_Section):
    data: str = Field(description="Folder for the prepared splits and tokenizer (relative to the project).")
    gens: str = Field(description="Folder with one sub-folder per generation.")
    reports: str = Field(description="Folder for summary.csv and plots.")

    @field_validator("data", "gens", "reports")
    @classmethod
    def _inside_project(cls, value: str) -> str:
        """Outputs stay inside the project (or sweep workspace): no absolute paths, no '..'."""
        if os.environ.get("SYNTHLOOP_ALLOW_OUTSIDE_PATHS") == "1":
            return value
        if not value.strip() or Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError("output folders must be relative paths inside the project, without '..' "
                             "(set SYNTHLOOP_ALLOW_OUTSIDE_PATHS=1 to allow others)")
        return value


class DataParams(_Section):
    corpus: str = Field(description="Real text: a .txt file (documents separated by blank lines), a folder of .txt files, or a .jsonl with a 'text' field.")
    test_corpus: str | None = Field(description="Held-out real test set (same formats); empty/null splits data.corpus instead.")
    test_fraction: float = Field(gt=0, lt=1, description="Share of documents held out when test_corpus is empty.")
    min_chars: int = Field(ge=1, description="Documents shorter than this many characters are dropped.")


class TokenizerParams(_Section):
    vocab_size: int = Field(ge=260, le=65536, description="BPE vocabulary size (byte-level, trained once on the real training split).")


class ModelParams(_Section):
    source: str = Field(min_length=1, description="scratch: a new model of the shape below, with a tokenizer trained on the corpus; or a pretrained model that brings its own tokenizer and shape: a .gguf file, a Hugging Face model folder (safetensors weights; remote code never runs) or a hub id (needs the network; offline only from the local cache). `make models` puts SmolLM2-135M-Instruct at models/SmolLM2-135M-Instruct.Q4_1.gguf.")
    arch: Literal["gpt2", "llama"] = Field(description="transformers causal-LM family (scratch models; a pretrained source has its own).")
    n_layer: int = Field(ge=1, le=48, description="Transformer blocks.")
    n_embd: int = Field(ge=16, le=4096, description="Hidden size (must be divisible by n_head).")
    n_head: int = Field(ge=1, le=64, description="Attention heads.")
    context: int = Field(ge=16, le=8192, description="Maximum sequence length (positions).")

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelParams:
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})")
        return self


class ComputeParams(_Section):
    device: Literal["cpu", "cuda", "auto"] = Field(description="Where models run; auto picks cuda when available.")
    threads: int = Field(ge=0, le=256, description="torch CPU threads; 0 (or 'auto' in params.yaml) = the CPUs this process may use (affinity, cgroup quota). Results are byte-identical only at equal thread counts.")
    train_processes: int = Field(default=1, ge=1, le=64, description="Data-parallel training: >1 trains with torch DDP in that many processes started by torchrun (gloo on CPU, nccl on CUDA), each on batch_size / N of every global batch and threads / N CPU threads; the loss curve equals one process's within float rounding (tests: 1e-4 nats). train.batch_size must divide by it.")

    @field_validator("threads", mode="before")
    @classmethod
    def _auto(cls, value: Any) -> Any:
        return 0 if value == "auto" else value


class LoopParams(_Section):
    seed: int = Field(ge=0, description="One seed per loop; every source of randomness derives from it.")
    chain: dict[str, int] = Field(description="Generation -> the generation whose model writes its data: {'1': 0, '2': 1, ..., 'G': G-1}. Spelled out because DVC templating cannot compute k-1; its length is the number of generations G.")

    @field_validator("chain", mode="before")
    @classmethod
    def _keys_quoted(cls, value: Any) -> Any:
        if isinstance(value, dict) and not all(isinstance(k, str) for k in value):
            raise ValueError("loop.chain keys must be quoted, e.g. {'1': 0, '2': 1}: DVC's foreach skips integer keys")
        return value

    @model_validator(mode="after")
    def _chain_is_consecutive(self) -> LoopParams:
        g = len(self.chain)
        if g > 100:
            raise ValueError(f"loop.chain has {g} generations; at most 100 are supported")
        if g < 1 or self.chain != {str(k): k - 1 for k in range(1, g + 1)}:
            raise ValueError("loop.chain must be {'1': 0, '2': 1, ..., 'G': G-1} with G >= 1 generations")
        return self

    @property
    def generations(self) -> int:
        return len(self.chain)


# generate.* for the loop's own model sampled in process, no budget, no prices (benchmarks and tests build from it)
SELF_LOCAL: dict[str, Any] = {
    "source": "self",
    "teacher": None,
    "backend": "local",
    "base_url": None,
    "model": None,
    "route": "completions",
    "api_key_env": None,
    "max_tokens_total": 0,
    "price_per_mtok": [0.0, 0.0],
}
OPERATIONAL = ("timeout_s", "concurrency", "retries", "max_failures")  # generate.* that never change a result


class GenerateParams(_Section):
    num_samples: int = Field(ge=1, le=1_000_000, description="Synthetic documents sampled per generation.")
    max_new_tokens: int = Field(ge=1, description="Length cap of each sample in tokens (cut earlier at end-of-text).")
    temperature: float = Field(gt=0, le=10, description="Sampling temperature.")
    top_k: int = Field(ge=0, description="Keep the k most likely tokens (0 = off).")
    top_p: float = Field(gt=0, le=1, description="Nucleus sampling mass (1 = off).")
    prompt: Literal["bos", "prefix", "template"] = Field(description="bos: start from end-of-text; prefix: the first prompt_tokens tokens of a real training document; template: the model's chat template applied to an instruction built from generate.template and a topic drawn from generate.topics. The prompt is kept in each sample's provenance.")
    prompt_tokens: int = Field(ge=1, description="Prefix length when prompt = prefix.")
    template: str | None = Field(description="prompt = template: a text file (relative to the project) holding the instruction, with {topic} where the topic goes, e.g. 'Write a short fairy tale about {topic}.'")
    topics: str | None = Field(description="prompt = template: a text file of topics, one per line; each sample draws one (seeded).")
    batch_size: int = Field(ge=1, le=4096, description="Samples generated at once (local, vllm); requests per resumable shard (http). The budget is checked after each batch.")
    source: Literal["self", "teacher"] = Field(description="self: the previous generation's model writes generation k's data (the self-consuming loop); teacher: one fixed model writes every generation's data (distillation): generate.teacher with the local or vllm backend, the model behind generate.base_url with http.")
    teacher: str | None = Field(description="source = teacher with backend local or vllm: a .gguf file, a Hugging Face model folder or a hub id (as model.source); null otherwise.")
    backend: Literal["local", "http", "vllm"] = Field(description="local: sampled in this process (torch); http: an OpenAI-compatible server at generate.base_url (source = teacher; `synthloop serve` starts llama.cpp's); vllm: vLLM's offline engine in this process, on a CUDA GPU (pip install 'synthloop[gpu]').")
    base_url: HttpUrl = Field(description="backend http: the server's base URL (http://host:port or .../v1).")
    model: str | None = Field(description="backend http: the model name sent to the server (one it lists at /v1/models).")
    route: Literal["completions", "chat"] = Field(description="backend http: completions (/v1/completions: the bos or prefix prompt as text) or chat (/v1/chat/completions: generate.prompt = template, the instruction as the user's message).")
    api_key_env: str | None = Field(description="backend http: the environment variable holding the API key (null = no key); the key is never logged.")
    max_tokens_total: int = Field(ge=0, description="Budget: completion tokens one generation may spend; generation stops after the batch that reaches it and records budget_hit = 1 (0 = no budget).")
    price_per_mtok: list[float] = Field(min_length=2, max_length=2, description="[input, output] price per million prompt and completion tokens; cost = what a generation's tokens cost at these prices ([0, 0] = free).")
    # operational knobs of the http backend: they never change a result
    timeout_s: float = Field(default=120.0, gt=0, description="backend http: timeout of one request in seconds.")
    concurrency: int = Field(default=4, ge=1, le=256, description="backend http: requests in flight at once.")
    retries: int = Field(default=3, ge=0, le=20, description="backend http: retries per request (429/408/5xx/timeouts/refused, backoff honouring Retry-After).")
    max_failures: int = Field(default=10, ge=1, le=10_000, description="backend http: circuit breaker: this many failed requests in a row stop the stage (finished shards kept; rerun resumes).")

    def sampling(self) -> dict[str, Any]:
        """The knobs that decide the samples (a cache key): not the budget, prices or http operations."""
        return self.model_dump(mode="json", exclude=set(OPERATIONAL) | {"max_tokens_total", "price_per_mtok"})

    @field_validator("price_per_mtok")
    @classmethod
    def _prices(cls, value: list[float]) -> list[float]:
        if any(v < 0 for v in value):
            raise ValueError("prices must be >= 0: [input, output] per million tokens")
        return value

    @model_validator(mode="after")
    def _writer(self) -> GenerateParams:
        if self.backend == "http":
            if self.source != "teacher":
                raise ValueError("generate.backend = http samples a fixed served model: set generate.source: teacher "
                                 "(the self loop samples its own last model with backend local or vllm)")
            if not (self.base_url and self.model):
                raise ValueError("generate.backend = http needs generate.base_url and generate.model")
            if self.teacher:
                raise ValueError("generate.teacher is for the local and vllm backends; with http the teacher is "
                                 "generate.model at generate.base_url: set generate.teacher: null")
            if self.prompt == "bos":
                raise ValueError("generate.prompt = bos has no text to send a server; use prefix (a real document's "
                                 "first tokens) or template with backend http")
            if (self.route == "chat") != (self.prompt == "template"):
                raise ValueError(f"generate.route = {self.route} does not fit generate.prompt = {self.prompt}: "
                                 "chat sends a template instruction, completions a bos or prefix prompt")
        elif self.source == "teacher" and not self.teacher:
            raise ValueError(f"generate.source = teacher with backend {self.backend} needs generate.teacher "
                             "(a .gguf file, a model folder or a hub id)")
        if self.source == "self" and self.teacher:
            raise ValueError("generate.teacher is set but generate.source = self; set source: teacher or teacher: null")
        return self


class GradeParams(_Section):
    steps: list[str] = Field(description=f"Graders in the order they run, each at most once: {', '.join(GRADERS)}. A sample dropped by one grader is not shown to the next.")
    min_words: int = Field(ge=0, description="filters: drop samples with fewer words.")
    max_words: int = Field(ge=1, description="filters: drop samples with more words.")
    max_repetition: float = Field(ge=0, le=1, description="filters: drop samples whose repeated-word-3-gram share exceeds this (1 = off).")
    max_garbage: float = Field(ge=0, le=1, description="filters: drop samples whose share of characters outside letters, digits, common punctuation and whitespace exceeds this (1 = off).")
    dedup_threshold: float = Field(gt=0, le=1, description="dedup: drop a sample whose word-shingle Jaccard similarity (MinHash estimate) to an earlier kept sample, of this or an earlier generation, is at least this.")
    dedup_num_perm: int = Field(ge=16, le=1024, description="dedup: MinHash permutations (more = more exact, slower).")
    dedup_shingle: int = Field(ge=1, le=32, description="dedup: words per shingle (word n-gram size).")
    decontam_ngram: int = Field(ge=1, le=64, description="decontaminate: word n-gram size compared with the held-out real test split.")
    decontam_threshold: float = Field(ge=0, lt=1, description="decontaminate: drop samples whose share of word n-grams found in the test split exceeds this.")
    self_rule: Literal["none", "threshold", "lowest", "highest", "band"] = Field(description="self: keep rule on each sample's perplexity under the previous generation's model: the model that wrote it (generate.source: self), or the student a teacher writes for.")
    self_max_ppl: float = Field(gt=0, description="self threshold: keep samples with perplexity <= this.")
    self_fraction: float = Field(gt=0, le=1, description="self lowest/highest: keep this share of samples.")
    self_band_low: float = Field(ge=0, le=1, description="self band: lower perplexity quantile kept.")
    self_band_high: float = Field(ge=0, le=1, description="self band: upper perplexity quantile kept.")
    reference_rule: Literal["none", "band"] = Field(description="reference: none (score only) or band: keep samples whose perplexity under the frozen generation-0 model lies within the real audit documents' quantiles reference_low..reference_high.")
    reference_low: float = Field(ge=0, le=1, description="reference band: lower quantile of the real documents' reference perplexity.")
    reference_high: float = Field(ge=0, le=1, description="reference band: upper quantile of the real documents' reference perplexity.")
    random_fraction: float = Field(gt=0, le=1, description="random: keep this share of the samples, drawn at random (seeded): the control of a grader that keeps its favourite share.")
    verifier_rule: Literal["none", "top", "resample"] = Field(description="verifier: none (score only), top (keep the verifier_fraction most real-like) or resample (keep each sample with probability proportional to its odds p/(1-p), verifier_fraction kept on average; seeded).")
    verifier_fraction: float = Field(gt=0, le=1, description="verifier top/resample: share of samples kept (resample: in expectation).")
    verifier_features: Literal["words", "model"] = Field(description="verifier: what the classifier reads: words (TF-IDF word 1-2-grams) or model (the per-token loss statistics of the frozen generation-0 model: mean, sd, quantiles, max, length).")
    verifier_match_length: bool = Field(description="verifier: cut each real training text to the token length of a generation-0 sample, so length is no cue (else every real text is cut to generate.max_new_tokens).")
    verifier_train_size: int = Field(ge=10, le=100_000, description="verifier: real training documents (cut to sample length) and generation-0 samples each, to train the real-vs-synthetic classifier once per loop.")
    judge_backend: Literal["local", "http"] = Field(description="judge: a local transformers causal LM (judge_model_dir) or an OpenAI-compatible HTTP endpoint (judge_base_url).")
    judge_mode: Literal["generate", "logits"] = Field(description="judge: generate a reply and parse SCORE, or logits: the expected digit after 'SCORE:' (local: the model's logits; http: the top logprobs of one completions-route token, as llama.cpp and vLLM return them). Small models that cannot follow the rubric still score in logits mode.")
    judge_model_dir: str | None = Field(description="judge local: folder of the judge model (relative to the project), e.g. a transformers model with safetensors weights; 'gen0' = this loop's generation-0 model.")
    judge_base_url: HttpUrl = Field(description="judge http: base URL of the OpenAI-compatible server (http://host:port or .../v1).")
    judge_model: str | None = Field(description="judge http: model name sent to the server.")
    judge_route: Literal["chat", "completions"] = Field(description="judge http: /v1/chat/completions or /v1/completions.")
    judge_api_key_env: str | None = Field(description="judge http: name of the environment variable holding the API key (null = no key); the key is never logged.")
    judge_timeout_s: float = Field(gt=0, description="judge http: timeout of one request in seconds.")
    judge_concurrency: int = Field(ge=1, le=256, description="judge http: requests in flight at once.")
    judge_retries: int = Field(ge=0, le=20, description="judge http: retries per request (429/5xx/timeouts, with backoff honouring Retry-After).")
    judge_max_failures: int = Field(default=10, ge=1, le=10_000, description="judge http: circuit breaker: this many failed requests in a row stop the stage (finished shards kept; rerun resumes).")
    judge_rule: Literal["threshold", "top"] = Field(description="judge: threshold (keep scores >= judge_min_score) or top (keep the judge_fraction best-scored samples).")
    judge_min_score: float = Field(ge=1, le=10, description="judge threshold: keep samples the judge scores at least this (1-10).")
    judge_fraction: float = Field(gt=0, le=1, description="judge top: share of the scored samples kept (ties by order).")
    judge_unparsed: Literal["keep", "drop"] = Field(description="judge: what happens to a sample whose verdict did not parse or whose request failed.")
    audit_size: int = Field(ge=0, le=100_000, description="Grader audit: held-out real test documents (cut to sample length, the same ones every generation) that every grader also scores; 0 = no audit. The reference band comes from them too.")

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, steps: list[str]) -> list[str]:
        for name in steps:
            if name not in GRADERS:
                hint = difflib.get_close_matches(name, GRADERS, n=1)
                did = f"did you mean '{hint[0]}'? " if hint else ""
                raise ValueError(f"unknown grader '{name}'; {did}choose from {', '.join(GRADERS)}")
        repeated = sorted({name for name in steps if steps.count(name) > 1})
        if repeated:
            raise ValueError(f"grader '{repeated[0]}' is listed twice; each grader runs at most once")
        return steps

    @model_validator(mode="after")
    def _band_ordered(self) -> GradeParams:
        if self.self_band_low >= self.self_band_high:
            raise ValueError("grade.self_band_low must be below grade.self_band_high")
        if self.reference_low >= self.reference_high:
            raise ValueError("grade.reference_low must be below grade.reference_high")
        if self.min_words > self.max_words:
            raise ValueError("grade.min_words must not exceed grade.max_words")
        if "reference" in self.steps and self.reference_rule == "band" and self.audit_size < 10:
            raise ValueError(f"grade.audit_size = {self.audit_size}: the reference band needs at least 10 real "
                             "documents; raise grade.audit_size or set grade.reference_rule: none")
        if "judge" in self.steps:
            if self.judge_backend == "local" and not self.judge_model_dir:
                raise ValueError("grade.judge_model_dir is required when grade.judge_backend is local")
            if self.judge_backend == "http" and not (self.judge_base_url and self.judge_model):
                raise ValueError("grade.judge_base_url and grade.judge_model are required when grade.judge_backend is http")
            if self.judge_backend == "http" and self.judge_mode == "logits" and self.judge_route != "completions":
                raise ValueError("grade.judge_mode = logits over http reads the next token's logprobs, which only the "
                                 "completions route returns: set grade.judge_route: completions")
        return self


class MixParams(_Section):
    strategy: Literal["replace", "accumulate", "accumulate_subsample", "fixed_fraction", "dilution"] = Field(description="How real and synthetic documents form the next training set. dilution is the real-only control of fixed_fraction: the same real share alone, and each training batch cut to that share of its windows (the real windows synthetic data would have displaced).")
    real_fraction: float = Field(ge=0, le=1, description="fixed_fraction and dilution: share of real data (by mix.unit), resampled each generation.")
    train_size: int = Field(ge=1, description="Size of each training set in mix.unit (accumulate grows past it: the real base of train_size + all kept synthetic).")
    unit: Literal["documents", "tokens"] = Field(description="What mix.train_size and mix.real_fraction count: documents, or tokens of the loop's tokenizer (token-matched mixing: whole real tales are several times longer than capped samples).")
    select: Literal["none", "verifier"] = Field(description="accumulate_subsample: how its train_size is drawn from the pool of real base + every kept sample: none (uniformly) or verifier (weighted by P(real)^select_power from grade's real-vs-synthetic verifier, each row scored cut to sample length, its origin hidden: Drayson & Lampos 2025's resampling).")
    select_power: float = Field(ge=0, description="mix.select = verifier: the exponent b of the weights P(real)^b (0 = uniform).")
    train_size0: int | None = Field(ge=1, description="Generation 0's real training set in mix.unit (null = mix.train_size; above the split's size = the whole split). The real base later generations mix with stays mix.train_size.")


class TrainParams(_Section):
    init: Literal["scratch", "continue", "base"] = Field(description="Where each generation's training starts: scratch (new random weights; scratch models), continue (the previous generation's model) or base (every generation fine-tunes the same base: the pretrained model.source, Shumailov et al.'s protocol, or for a scratch model generation 0's model, trained on real data only).")
    method: Literal["full", "lora"] = Field(description="full: every weight trains; lora: low-rank adapters (peft) on train.lora_targets, merged into the saved model (the adapter kept beside it in model/adapter). lora needs a pretrained model.source.")
    steps: int = Field(ge=1, description="Optimizer steps per generation when train.budget = steps (fixed compute: every strategy sees the same tokens).")
    steps0: int | None = Field(ge=0, description="Optimizer steps at generation 0 whatever train.budget (null = as later generations); 0 = a pretrained model.source as it is, untrained.")
    budget: Literal["steps", "epochs"] = Field(description="How long each generation trains: steps (train.steps, fixed compute) or epochs (train.epochs passes over its training set: accumulate's compute grows with its pool).")
    epochs: float = Field(gt=0, description="train.budget = epochs: passes over the training set's tokens per generation (steps = epochs x tokens / (batch_size x block_size), at least warmup_steps + 1).")
    lora_rank: int = Field(ge=1, le=1024, description="lora: rank r of each adapter.")
    lora_alpha: float = Field(gt=0, description="lora: scaling alpha (the update is scaled by alpha / r).")
    lora_dropout: float = Field(ge=0, lt=1, description="lora: dropout on the adapter's input.")
    lora_targets: list[str] = Field(min_length=1, description="lora: names of the modules that get adapters (Llama: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; GPT-2: c_attn, c_proj, c_fc).")
    batch_size: int = Field(ge=1, description="Sequences per optimizer step.")
    micro_batch: int = Field(ge=1, description="Sequences per forward/backward pass; gradients accumulate over batch_size / micro_batch passes (memory knob, same result).")
    block_size: int = Field(ge=8, description="Tokens per training sequence (packed, no padding); at most model.context.")
    lr: float = Field(gt=0, lt=1, description="Peak AdamW learning rate (linear warmup, cosine decay to lr/10).")
    lr0: float | None = Field(gt=0, lt=1, description="Generation 0's peak learning rate (null = train.lr): a from-scratch generation 0 that later generations fine-tune (train.init: base) wants a higher one than the fine-tuning.")
    warmup_steps: int = Field(ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(ge=0, le=1, description="AdamW weight decay.")
    precision: Literal["fp32", "bf16"] = Field(description="bf16 autocast (faster on CPUs with bf16 units) or plain fp32.")
    # an operational knob, not an experiment one: it never changes the result, so older params files may leave it out
    checkpoint_every: int = Field(default=0, ge=0, description="Save a resumable checkpoint (weights, optimizer, data position) every this many steps; a killed train resumes from the last one with the same final weights. 0 = off.")


    @model_validator(mode="after")
    def _warmup_below_steps(self) -> TrainParams:
        if self.batch_size % self.micro_batch:
            raise ValueError(f"train.micro_batch ({self.micro_batch}) must divide train.batch_size ({self.batch_size})")
        if self.warmup_steps >= self.steps:
            raise ValueError(f"train.warmup_steps ({self.warmup_steps}) must be below train.steps ({self.steps})")
        if self.steps0 and self.warmup_steps >= self.steps0:
            raise ValueError(f"train.warmup_steps ({self.warmup_steps}) must be below train.steps0 ({self.steps0})")
        return self

    def at(self, gen: int, stream_tokens: int = 0) -> TrainParams:
        """The settings generation `gen` trains with on a training stream of `stream_tokens` tokens:
        generation 0 may have its own step count and learning rate; train.budget = epochs sets the
        steps from the stream."""
        cfg = self.model_copy(update={"lr": self.lr0}) if gen == 0 and self.lr0 is not None else self
        if gen == 0 and self.steps0 is not None:
            return cfg.model_copy(update={"steps": self.steps0})
        if self.budget == "epochs" and stream_tokens:
            steps = round(self.epochs * stream_tokens / (self.batch_size * self.block_size))
            return cfg.model_copy(update={"steps": max(steps, self.warmup_steps + 1)})
        return cfg


class EvaluateParams(_Section):
    num_samples: int = Field(ge=1, description="Fresh samples drawn per round for the sample metrics (T=1, generate.max_new_tokens); more rounds are drawn until evaluate.metric_words is filled.")
    max_test_tokens: int = Field(ge=0, description="Cap on held-out real test tokens scored for cross-entropy (0 = the whole test split).")
    block_size: int = Field(ge=8, description="Tokens per window when scoring the test split (non-overlapping windows): the evaluation's own, so changing train.block_size does not change the metric; at most the model's context, and for a model trained from scratch at most train.block_size (positions past the training blocks are never learned).")
    metric_words: int = Field(ge=0, description="Word budget of the sample metrics: samples are pooled in order and cut at this many words, and the real-text reference is cut to the same budget, so a model whose samples grow shorter is not scored as more diverse (0 = every word of evaluate.num_samples samples, round 1).")
    keep_samples: int = Field(ge=0, le=100, description="Samples kept as text in each generation's samples.jsonl.")


class TrackingParams(_Section):
    experiment: str = Field(min_length=1, description="MLflow experiment name.")
    uri: str | None = Field(description="MLflow tracking URI; empty = sqlite store in the project (MLFLOW_TRACKING_URI overrides both).")


class Params(_Section):
    paths: PathsParams
    data: DataParams
    tokenizer: TokenizerParams
    model: ModelParams
    compute: ComputeParams
    loop: LoopParams
    generate: GenerateParams
    grade: GradeParams
    mix: MixParams
    train: TrainParams
    evaluate: EvaluateParams
    tracking: TrackingParams

    @property
    def pretrained(self) -> bool:
        """True when the loop starts from a pretrained model (model.source is not scratch)."""
        return self.model.source != "scratch"

    @model_validator(mode="after")
    def _source_and_training_agree(self) -> Params:
        t, g = self.train, self.generate
        if self.pretrained:
            if t.init == "scratch":
                raise ValueError(f"train.init = scratch would discard the pretrained model.source ({self.model.source}); "
                                 "use continue or base")
        else:
            if t.method == "lora":
                raise ValueError("train.method = lora adapts a pretrained model; set model.source to one, or use full")
            if t.steps0 == 0:
                raise ValueError("train.steps0 = 0 keeps a pretrained model as it is; a scratch model must train (null or >= 1)")
            if g.prompt == "template" and g.source == "self":
                raise ValueError("generate.prompt = template needs a chat template, which only a pretrained model.source "
                                 "or a teacher (generate.source: teacher) has")
        if g.prompt == "template" and not (g.template and g.topics):
            raise ValueError("generate.prompt = template needs generate.template and generate.topics (text files)")
        if self.mix.select != "none" and self.mix.strategy != "accumulate_subsample":
            raise ValueError(f"mix.select = {self.mix.select} draws from a mixed pool: it needs mix.strategy = "
                             f"accumulate_subsample (got {self.mix.strategy})")
        if self.mix.strategy == "dilution" and self.train_at(1).batch_size % self.compute.train_processes:
            raise ValueError(f"mix.strategy = dilution trains on batches of {self.train_at(1).batch_size} windows, which "
                             f"compute.train_processes ({self.compute.train_processes}) must divide; raise train.batch_size")
        if t.batch_size % self.compute.train_processes:
            raise ValueError(f"compute.train_processes ({self.compute.train_processes}) must divide train.batch_size "
                             f"({t.batch_size}): each process trains on an equal share of every batch")
        return self

    def train_at(self, gen: int, stream_tokens: int = 0) -> TrainParams:
        """TrainParams.at, and the dilution control's batch: the real share of each batch's windows."""
        cfg = self.train.at(gen, stream_tokens)
        if gen > 0 and self.mix.strategy == "dilution":
            batch = max(1, round(self.mix.real_fraction * cfg.batch_size))
            cfg = cfg.model_copy(update={"batch_size": batch, "micro_batch": batch})
        return cfg

    @model_validator(mode="after")
    def _fits_context(self) -> Params:
        if self.pretrained:
            return self  # the model's own context: checked against the model by the preflight
        for key, size in (("train.block_size", self.train.block_size), ("evaluate.block_size", self.evaluate.block_size)):
            if size > self.model.context:
                raise ValueError(f"{key} ({size}) exceeds model.context ({self.model.context})")
        if self.evaluate.block_size > self.train.block_size:
            raise ValueError(
                f"evaluate.block_size ({self.evaluate.block_size}) exceeds train.block_size ({self.train.block_size}): "
                "a model trained from scratch never learns the positions past its training blocks; "
                "set evaluate.block_size <= train.block_size")
        prompt = 1 + (self.generate.prompt_tokens if self.generate.prompt == "prefix" else 0)  # EOS + prefix
        if self.generate.source == "self" and prompt + self.generate.max_new_tokens > self.model.context:
            raise ValueError(
                f"generate.max_new_tokens ({self.generate.max_new_tokens}) plus the prompt ({prompt}) "
                f"exceeds model.context ({self.model.context}); lower it or raise model.context")
        return self


def _loc(err: dict[str, Any]) -> str:
    return ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))


def _one_line(exc: ValidationError, source: str) -> str:
    errors = exc.errors()
    # a typo shows up as an unknown key plus a missing one: name the unknown key (with a hint)
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    key = _loc(err)
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if err["type"] == "extra_forbidden":
        section = _section_model(key)
        known = list(section.model_fields) if section else list(Params.model_fields)
        hint = difflib.get_close_matches(key.split(".")[-1], known, n=1)
        did = f"; did you mean '{'.'.join(key.split('.')[:-1] + [hint[0]])}'?" if hint else ""
        return f"{source}: unknown key '{key}'{did}{more}"
    if err["type"] == "missing":
        return f"{source}: missing key '{key}'; add it (see params.yaml for every key){more}"
    if err["type"] == "literal_error":
        return f"{source}: {key} = {err['input']!r} is not allowed; {err['ctx']['expected']}{more}"
    msg = err["msg"].removeprefix("Value error, ")
    where = f"{key} = {err['input']!r}: " if key and not isinstance(err["input"], dict) else ""
    return f"{source}: {where}{msg}{more}"


def _section_model(dotted: str) -> type[BaseModel] | None:
    head = dotted.split(".")[0]
    field = Params.model_fields.get(head)
    return field.annotation if field and "." in dotted else None  # type: ignore[return-value]


def parse_params(raw: Any, source: str = "params") -> Params:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (paths, data, ...), got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, source)) from None


def read_yaml(path: Path, missing: str) -> Any:
    """A YAML file's content; a missing or unparsable file is one ConfigError line."""
    if not path.is_file():
        raise ConfigError(f"{path}: {missing}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load_params(path: str | Path) -> Params:
    path = Path(path)
    raw = read_yaml(path, "params file not found; run from the project root or pass --params")
    return parse_params(raw, str(path))


def flatten(params: Params) -> dict[str, Any]:
    """Flat dotted keys -> values, as logged to MLflow and overridden by `dvc exp run -S`."""
    out: dict[str, Any] = {}
    for section, values in params.model_dump().items():
        for key, value in values.items():
            out[f"{section}.{key}"] = value
    return out
