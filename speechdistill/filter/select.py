"""Selection rules: a small language for ``--keep``, evaluated on score tables.

A rule is one of::

    SCORE >= X   SCORE > X   SCORE <= X   SCORE < X     threshold (X a number, e.g. -0.6, 1e-3)
    top:P%:SCORE                                         the best P % of the utterances
    top:N:SCORE                                          the best N utterances
    hours:H:SCORE                                        the best utterances, up to H hours of audio
    auto                                                 a label-free score and threshold chosen on
                                                         the labelled utterances (diagnostics)

where ``SCORE`` is a score name (``confidence``, ``proxy_wer``, …) or ``rank_avg(a,b,…)``, the mean
of the scores' percentile ranks (each in (0, 1], 1 = best; ties share their average rank).
Spaces are ignored. An utterance is kept when it passes every rule:

1. thresholds (and ``auto``) are each evaluated on the whole input;
2. then quotas (``top``, ``hours``) apply, in the order given, to the utterances still kept, so
   ``--keep "empty>=1" --keep "hours:100:confidence"`` gives 100 h of non-empty labels when there
   are that many.

NaN (a score that could not judge an utterance) fails every threshold and ranks last; ties are
broken by utterance id, so every rule is deterministic. ``hours`` keeps the longest prefix of the
ranking whose total duration fits the budget.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_EXPR = rf"(?:{_NAME}|rank_avg\({_NAME}(?:,{_NAME})*\))"
_THRESHOLD = re.compile(rf"^(?P<expr>{_EXPR})(?P<op>>=|<=|>|<)(?P<value>[^<>=]+)$")
_QUOTA = re.compile(rf"^(?P<kind>top|hours):(?P<amount>[^:]+):(?P<expr>{_EXPR})$")
_RANK_AVG = re.compile(rf"^rank_avg\((?P<names>{_NAME}(?:,{_NAME})*)\)$")

Scores = Mapping[str, Mapping[str, float]]


class RuleError(ValueError):
    """A ``--keep`` rule that does not parse or names an unknown score."""


@dataclass(frozen=True)
class ScoreExpr:
    """A score name, or the rank average of several."""

    names: tuple[str, ...]
    rank_avg: bool = False

    @property
    def text(self) -> str:
        return f"rank_avg({','.join(self.names)})" if self.rank_avg else self.names[0]

    def values(self, scores: Scores, utts: Sequence[str]) -> dict[str, float]:
        """The expression's value for every utterance."""
        missing = [n for n in self.names if n not in scores]
        if missing:
            raise RuleError(f"{self.text}: score {missing[0]!r} was not computed")
        if not self.rank_avg:
            table = scores[self.names[0]]
            return {u: float(table.get(u, math.nan)) for u in utts}
        ranks = [percentile_ranks(scores[n], utts) for n in self.names]
        return {u: float(np.mean([r[u] for r in ranks])) for u in utts}


@dataclass(frozen=True)
class Rule:
    """One parsed ``--keep`` rule."""

    kind: str  # "threshold", "top", "top_pct", "hours" or "auto"
    expr: ScoreExpr | None = None
    op: str = ""
    value: float = math.nan
    origin: str = ""  # "auto" for the rule that --keep auto chose

    @property
    def text(self) -> str:
        if self.kind == "auto":
            return "auto"
        assert self.expr is not None
        e = self.expr.text
        if self.kind == "threshold":
            return f"{e}{self.op}{self.value:g}"
        if self.kind == "top_pct":
            return f"top:{self.value:g}%:{e}"
        if self.kind == "top":
            return f"top:{int(self.value)}:{e}"
        return f"hours:{self.value:g}:{e}"

    @property
    def is_quota(self) -> bool:
        return self.kind in ("top", "top_pct", "hours")

    @property
    def score_names(self) -> tuple[str, ...]:
        return () if self.expr is None else self.expr.names


def _number(text: str, rule: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise RuleError(f"bad rule {rule!r}: {text!r} is not a number") from None
    if not math.isfinite(x):
        raise RuleError(f"bad rule {rule!r}: {text!r} is not a finite number")
    return x


def _expr(text: str, known: Iterable[str] | None, rule: str) -> ScoreExpr:
    m = _RANK_AVG.match(text)
    names = tuple(m.group("names").split(",")) if m else (text,)
    if known is not None:
        known = set(known)
        for n in names:
            if n not in known:
                raise RuleError(
                    f"bad rule {rule!r}: unknown score {n!r}; valid: {', '.join(sorted(known))}"
                )
    if m and len(set(names)) != len(names):
        raise RuleError(f"bad rule {rule!r}: a score appears twice in rank_avg")
    return ScoreExpr(names, rank_avg=m is not None)


def parse_score(text: str, known: Iterable[str] | None = None) -> ScoreExpr:
    """Parse a score expression (a name or ``rank_avg(a,b,…)``), e.g. ``--weight``'s."""
    s = "".join(text.split())
    if not re.fullmatch(_EXPR, s):
        raise RuleError(f"bad score {text!r}: expected a score name or rank_avg(a,b,...)")
    return _expr(s, known, text)


def parse_rule(text: str, known: Iterable[str] | None = None) -> Rule:
    """Parse one ``--keep`` rule (see the module docstring); ``known`` = valid score names."""
    s = "".join(text.split())
    if not s:
        raise RuleError("empty --keep rule")
    if s == "auto":
        return Rule("auto")
    m = _THRESHOLD.match(s)
    if m:
        return Rule("threshold", _expr(m["expr"], known, text), m["op"], _number(m["value"], text))
    m = _QUOTA.match(s)
    if m:
        expr = _expr(m["expr"], known, text)
        amount = m["amount"]
        if m["kind"] == "hours":
            h = _number(amount, text)
            if h <= 0:
                raise RuleError(f"bad rule {text!r}: hours must be positive")
            return Rule("hours", expr, value=h)
        if amount.endswith("%"):
            p = _number(amount[:-1], text)
            if not 0 < p <= 100:
                raise RuleError(f"bad rule {text!r}: the percentage must be in (0, 100]")
            return Rule("top_pct", expr, value=p)
        if not amount.isdigit() or int(amount) < 1:
            raise RuleError(f"bad rule {text!r}: top:N needs a positive integer N (or P%)")
        return Rule("top", expr, value=float(int(amount)))
    raise RuleError(
        f"bad rule {text!r}: expected SCORE>=X (>, <=, <), top:P%:SCORE, top:N:SCORE, "
        "hours:H:SCORE or auto (SCORE: a name or rank_avg(a,b,...))"
    )


def percentile_ranks(values: Mapping[str, float], utts: Sequence[str]) -> dict[str, float]:
    """Rank / n for each utterance (1 = the best, higher scores rank higher), ties averaged.

    NaN ranks below every number (NaNs tie with each other).
    """
    n = len(utts)
    if n == 0:
        return {}
    x = np.array([values.get(u, math.nan) for u in utts], dtype=np.float64)
    x = np.where(np.isnan(x), -np.inf, x)
    return {u: r / n for u, r in zip(utts, average_ranks(x), strict=True)}


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` in ascending order, ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def ranking(values: Mapping[str, float], utts: Iterable[str]) -> list[str]:
    """Utterances best first (NaN last; ties by utterance id)."""

    def key(u: str) -> tuple[float, str]:
        v = values.get(u, math.nan)
        return (math.inf if math.isnan(v) else -v, u)

    return sorted(utts, key=key)


# --------------------------------------------------------------------------------------------------
# evaluation


def passes(rule: Rule, scores: Scores, utts: Sequence[str]) -> set[str]:
    """Utterances that pass a threshold rule."""
    assert rule.kind == "threshold" and rule.expr is not None
    values = rule.expr.values(scores, utts)
    cmp = _OPS[rule.op]
    return {u for u in utts if not math.isnan(values[u]) and cmp(values[u], rule.value)}


def quota(
    rule: Rule,
    scores: Scores,
    utts: Sequence[str],
    durations: Mapping[str, float],
    all_utts: Sequence[str] | None = None,
) -> set[str]:
    """The utterances of ``utts`` that a quota rule keeps.

    ``rank_avg`` ranks are computed over ``all_utts`` (the whole input) so that they mean the same
    whichever subset the quota applies to.
    """
    assert rule.expr is not None
    values = rule.expr.values(scores, list(all_utts) if all_utts is not None else list(utts))
    order = ranking(values, utts)
    if rule.kind == "top_pct":
        return set(order[: math.floor(len(order) * rule.value / 100 + 0.5)])
    if rule.kind == "top":
        return set(order[: int(rule.value)])
    budget, total, kept = rule.value * 3600.0, 0.0, []
    for u in order:
        d = durations.get(u)
        if d is None:
            raise ValueError(f"hours rule: no duration for utterance {u!r}")
        if total + d > budget + 1e-9:
            break
        total += d
        kept.append(u)
    return set(kept)


@dataclass
class RuleOutcome:
    """How many utterances (and hours) a rule keeps: alone on the input, and in the cascade."""

    rule: str
    origin: str
    alone: set[str]
    after: set[str]


@dataclass
class Selection:
    """The result of applying every rule."""

    utts: list[str]
    kept: set[str]
    outcomes: list[RuleOutcome] = field(default_factory=list)


def select(
    rules: Sequence[Rule],
    scores: Scores,
    utts: Sequence[str],
    durations: Mapping[str, float],
) -> Selection:
    """Apply the rules (no ``auto`` left: resolve it first) as the module docstring says."""
    if any(r.kind == "auto" for r in rules):
        raise ValueError("select: resolve the 'auto' rule first (diagnostics.choose_auto)")
    utts = list(utts)
    kept = set(utts)
    outcomes = []
    for r in rules:
        if r.is_quota:
            continue
        alone = passes(r, scores, utts)
        kept &= alone
        outcomes.append(RuleOutcome(r.text, r.origin, alone, set(kept)))
    for r in rules:
        if not r.is_quota:
            continue
        alone = quota(r, scores, utts, durations)
        kept = quota(r, scores, [u for u in utts if u in kept], durations, utts)
        outcomes.append(RuleOutcome(r.text, r.origin, alone, set(kept)))
    return Selection(utts, kept, outcomes)
