"""The control of every keep-a-fraction grader: keep a seeded random grade.random_fraction of the samples.

An arm that keeps the half its grader likes best changes two things at once: which samples
train the next model and how many. This grader changes only the second: as many kept, picked
without looking at them. Its difference from the graded arm is what the grader's choice did.
"""

from __future__ import annotations

from random import Random

from .base import Graded, Grader


class RandomGrader(Grader):
    name = "random"

    def grade(self, texts):
        n = round(self.cfg.random_fraction * len(texts))
        keep = set(Random(self.env.ctx.seed("grade-random")).sample(range(len(texts)), n))
        return Graded({}, [None if i in keep else "random" for i in range(len(texts))])
