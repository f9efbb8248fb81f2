"""The graders behind `grade.steps`: name -> "module:Class" (imported when a stage uses it).

The order is the documentation order; a loop runs the graders in grade.steps' order.
Adding a grader: its module (a `base.Grader` subclass), one line here, its params.
"""

from __future__ import annotations

import importlib

REGISTRY = {
    "filters": "filters:FilterGrader",
    "dedup": "dedup:DedupGrader",
    "decontaminate": "decontam:DecontamGrader",
    "self": "likelihood:SelfGrader",
    "reference": "likelihood:ReferenceGrader",
    "verifier": "verifier:VerifierGrader",
    "judge": "judge:JudgeGrader",
    "random": "random_half:RandomGrader",
}


def grader_class(name: str):
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
