"""Typed deployment parameters: the Prefect UI form is generated from synthloop/config.py.

Prefect renders a flow parameter typed as a flat pydantic model as one group of
fields, with each field's description, its bounds (ge/le -> minimum/maximum) and
a dropdown for a Literal. So the `loop/default` deployment takes one parameter
per params.yaml section, each a *form model*: a flat copy of the section's model
in synthloop/config.py (same fields, types, bounds, descriptions). Two things differ,
because Prefect 3 renders them badly or not at all:

- `str | None`, `int | None` and `float | None` fields (data.test_corpus, tracking.uri, train.steps0, train.lr0)
  become plain strings, and an empty string means null: Prefect 3 draws an Optional as a
  union picker. A nullable int's string carries a pattern (digits, or empty), so the form
  still refuses "abc" or a negative count before a run exists.
- loop.chain ({'1': 0, '2': 1, ...}, spelled out only for DVC's templating) is
  asked for as `loop.generations` (an int) and spelled out again on the way back.

Cross-field rules (n_head divides n_embd, warmup below steps, ...) are not in the
JSON schema: to_params() runs the real config models on the submitted values and
raises ConfigError with one line, before any stage starts.
"""

# no `from __future__ import annotations`: pydantic's create_model and Prefect's
# parameter_schema read these annotations at runtime.
import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from .config import ConfigError, LoopParams, MixParams, Params, parse_params

FORM_CONFIG = ConfigDict(extra="forbid")


class LoopForm(BaseModel):
    """loop as the form asks for it: the number of generations instead of the spelled-out chain."""

    model_config = FORM_CONFIG
    seed: int = LoopParams.model_fields["seed"]
    generations: int = Field(
        ge=1, le=100, description="Generations after generation 0 (loop.chain is {'1': 0, ..., 'G': G-1})."
    )


def _optional(annotation: Any) -> type | None:
    """T for a `T | None` annotation with T str, int or float (the form's nullable scalars), else None."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    inner = set(typing.get_args(annotation)) - {type(None)}
    return next(iter(inner)) if len(inner) == 1 and inner <= {str, int, float} else None


def _nullable(section: str, key: str) -> type | None:
    """str, int or float for a nullable field of params.yaml (the form shows it as a string; empty = null)."""
    model = Params.model_fields[section].annotation if section in Params.model_fields else None
    field = model.model_fields.get(key) if model else None
    return _optional(field.annotation) if field is not None else None


FLOAT_PATTERN = r"^(|[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?)$"  # a nullable float: empty, or a plain number


def _int_pattern(info: Any) -> str:
    """The form's pattern for a nullable int: empty, or digits (a minus sign only where negatives are allowed)."""
    ge = next((m.ge for m in info.metadata if getattr(m, "ge", None) is not None), None)
    return r"^(|[0-9]+)$" if ge is not None and ge >= 0 else r"^(|-?[0-9]+)$"


def form_model(section: type[BaseModel]) -> type[BaseModel]:
    """A flat copy of one params section for the form (see the module docstring for what differs)."""
    fields: dict[str, Any] = {}
    for key, info in section.model_fields.items():
        inner = _optional(info.annotation)
        if inner is str:
            fields[key] = (str, Field(description=f"{info.description} Empty = null."))
        elif inner is int:
            fields[key] = (str, Field(pattern=_int_pattern(info), description=f"{info.description} Empty = null."))
        elif inner is float:
            fields[key] = (str, Field(pattern=FLOAT_PATTERN, description=f"{info.description} Empty = null."))
        else:
            fields[key] = (info.annotation, info)
    return create_model(section.__name__, __config__=FORM_CONFIG, __doc__=section.__doc__, **fields)


def _from_form(kind: type | None, value: Any) -> Any:
    """A nullable field's form string back to its params value ("" = null; digits = an int)."""
    if kind is None or not isinstance(value, str):
        return value
    if value == "":
        return None
    if kind is float:
        try:
            return float(value)
        except ValueError:
            return value  # the params check names the key
    return int(value) if kind is int and value.lstrip("-").isdigit() else value


def _to_form(kind: type | None, value: Any) -> Any:
    """A nullable field's params value as the form's string (null = "")."""
    if kind is None:
        return value
    return "" if value is None else str(value)


def _form_models() -> dict[str, type[BaseModel]]:
    models = {}
    for name, info in Params.model_fields.items():
        models[name] = LoopForm if name == "loop" else form_model(info.annotation)
    return models


# params.yaml section -> its form model, in params.yaml order (the form's order)
FORMS: dict[str, type[BaseModel]] = _form_models()


def to_form(params: Params) -> dict[str, BaseModel]:
    """Validated params -> one form model per section (the form's defaults)."""
    out: dict[str, BaseModel] = {}
    for name, values in params.model_dump().items():
        if name == "loop":
            values = {"seed": values["seed"], "generations": len(values["chain"])}
        values = {k: _to_form(_nullable(name, k), v) for k, v in values.items()}
        out[name] = FORMS[name].model_validate(values)
    return out


def to_raw(values: dict[str, Any]) -> dict[str, Any]:
    """Form values (models or the plain dicts Prefect hands over) -> params.yaml sections."""
    raw: dict[str, Any] = {}
    for name, section in values.items():
        body = dict(section.model_dump() if isinstance(section, BaseModel) else section)
        if name == "loop" and "generations" in body:
            g = body.pop("generations")
            body["chain"] = {str(k): k - 1 for k in range(1, int(g) + 1)}
        body = {k: _from_form(_nullable(name, k), v) for k, v in body.items()}
        raw[name] = body
    return raw


def to_params(values: dict[str, Any], source: str = "form") -> Params:
    """Form values -> Params, checked by the real config models (ConfigError: one line)."""
    return parse_params(to_raw(values), source)


# ---- the sweep deployment's parameters ---------------------------------------------------------

Strategy = MixParams.model_fields["strategy"].annotation  # the same dropdown as mix.strategy


def sweep_raw(
    strategies: list[str], seeds: list[int], generations: int, profile: str, name: str, out: str
) -> dict[str, Any]:
    """The sweep spec (synthloop/experiments/sweep.py) of a strategy x seed grid on one profile."""
    if not strategies:
        raise ConfigError("sweep form: pick at least one strategy")
    if not seeds:
        raise ConfigError("sweep form: give at least one seed")
    chain = {str(k): k - 1 for k in range(1, generations + 1)}
    return {
        "name": name,
        "params": profile,
        "out": out,
        "seeds": sorted(set(seeds)),
        "set": {"loop.chain": chain},
        "arms": {s: {"mix.strategy": s} for s in dict.fromkeys(strategies)},
    }
