"""A/B mixture sampler with entropy-aware temperature cooling (the paper's Algorithm 1, lines 2, 4, 5 and 15).

    T_t      = T0 - (T0 - T1) * t / T_max                      (line 4, linear cooling)
    p(s)     = softmax_s((w_s / conf_s) / T_t)                  (line 5)
    conf_s  <- alpha * conf_s + (1 - alpha) * exp(-H_t)         (line 15, after a step on source s)

conf_s starts at 1 (line 2). A source whose recent batches had high predictive entropy H (low confidence) gets a larger
w_s / conf_s, so it is drawn more while T is high; as T cools the draw concentrates on the largest w_s / conf_s.
`rebalance` is Algorithm 2's line 12: w_s <- normalise(w_s / (H_s + eps)).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from emoloom.core.errors import ParamError


@dataclass
class MixtureSampler:
    weights: dict[str, float]                 # target ratio weights w_s (normalised on construction)
    t0: float = 1.0                           # starting temperature T0
    t1: float = 0.1                           # final temperature T1
    total_steps: int = 1                      # T_max
    alpha: float = 0.9                        # EMA factor of the confidence proxy
    seed: int = 0
    conf: dict[str, float] = field(init=False)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ParamError(f"mixture weights must be >= 0 and not all 0: {self.weights}")
        if self.t0 <= 0 or self.t1 <= 0:
            raise ParamError(f"temperatures must be > 0 (T0={self.t0}, T1={self.t1})")
        total = sum(self.weights.values())
        self.weights = {s: w / total for s, w in self.weights.items()}
        self.conf = {s: 1.0 for s in self.weights}
        self.rng = random.Random(self.seed)

    def temperature(self, step: int) -> float:
        return self.t0 - (self.t0 - self.t1) * min(step, self.total_steps) / max(self.total_steps, 1)

    def probabilities(self, step: int) -> dict[str, float]:
        temp = self.temperature(step)
        logits = {s: (w / self.conf[s]) / temp if w > 0 else -math.inf for s, w in self.weights.items()}
        top = max(logits.values())
        exp = {s: math.exp(v - top) for s, v in logits.items()}
        z = sum(exp.values())
        return {s: e / z for s, e in exp.items()}

    def draw(self, step: int) -> str:
        probs = self.probabilities(step)
        r, acc = self.rng.random(), 0.0
        for source, p in probs.items():
            acc += p
            if r < acc:
                return source
        return source

    def update(self, source: str, entropy: float) -> None:
        self.conf[source] = self.alpha * self.conf[source] + (1 - self.alpha) * math.exp(-entropy)

    def rebalance(self, mean_entropy: dict[str, float], eps: float = 1e-6) -> None:
        """w_s <- normalise(w_s / (H_s + eps)) over the sources drawn this pass; an undrawn source (no H_s) keeps
        its weight, and the drawn ones share the rest of the mass in the same proportions as the rule gives them."""
        drawn = [s for s in self.weights if s in mean_entropy]
        if not drawn:
            return
        raw = {s: self.weights[s] / (mean_entropy[s] + eps) for s in drawn}
        total = sum(raw.values())
        share = 1.0 - sum(w for s, w in self.weights.items() if s not in raw)   # exactly 1.0 when all were drawn
        self.weights = {s: raw[s] / total * share if s in raw else w for s, w in self.weights.items()}

    def state_dict(self) -> dict:
        return {"weights": self.weights, "conf": self.conf, "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.weights, self.conf = dict(state["weights"]), dict(state["conf"])
        rng_state = state["rng"]
        self.rng.setstate((rng_state[0], tuple(rng_state[1]), rng_state[2]))
