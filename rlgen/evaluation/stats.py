"""Statistics over runs (training seeds), the unit that varies, following rliable (Agarwal et al., 2021);
and the generalization gap of one run (:func:`generalization_gap`, evaluation noise only).

A *run score* on a level set is the mean normalized return of that run's episodes. Per game:

- with 2 or more runs, the point estimate is the mean of run scores and its 95% CI a percentile
  bootstrap over run scores; the gap is computed per run (train minus held-out of the same run)
  and then bootstrapped over runs;
- with 1 run there is nothing to resample across seeds: the CI is a bootstrap over that run's
  episodes and measures evaluation noise only (callers label it so).

Across games (a ``(runs, games)`` matrix of run scores): the aggregates are ``rliable.metrics``'s
(IQM, mean, median, optimality gap); their CIs come from a stratified bootstrap written here
(runs resampled with replacement within each game, percentile interval; the replicates computed in
one batch by equivalents of rliable's functions, tested equal to them), because
``rliable.library`` imports ``arch``, which does not import with the pandas installed here.
The probability of improvement is rliable's definition (Mann-Whitney U over runs per game, averaged
over games); its point value is ``rliable.metrics.probability_of_improvement``, its bootstrap
replicates a vectorized equivalent (tested equal). Performance profiles (fraction of runs with score
above tau) and their stratified bootstrap bands are written here (``rliable.library`` again).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from typing import Any

import numpy as np
import scipy.stats

from rlgen.errors import RlgenError
from rlgen.evaluation.episodes import EvalResult

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate and its CI; ``ci`` is None where it cannot be estimated (one run)."""

    value: float
    ci: tuple[float, float] | None

    @property
    def width(self) -> float | None:
        return None if self.ci is None else self.ci[1] - self.ci[0]


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates along axis 0."""
    alpha = (1 - confidence) / 2
    return float(np.quantile(replicates, alpha)), float(np.quantile(replicates, 1 - alpha))


def bootstrap_mean_ci(values: np.ndarray, n_boot: int = 10_000, confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (shape ``(n,)``)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    return _interval(means, confidence)


def episode_gap_ci(train: np.ndarray, held_out: np.ndarray, n_boot: int = 10_000, confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """CI of mean(train) - mean(held_out) resampling the two sets of episodes independently."""
    a, b = np.asarray(train, dtype=np.float64), np.asarray(held_out, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boot = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1) - b[rng.integers(0, len(b), size=(n_boot, len(b)))].mean(axis=1)
    return _interval(boot, confidence)


@dataclasses.dataclass(frozen=True)
class Gap:
    """Generalization gap = mean train score - mean held-out score, with a bootstrap CI."""

    train_mean: float
    held_out_mean: float
    gap: float
    ci_low: float
    ci_high: float
    confidence: float
    normalized: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def generalization_gap(
    train: EvalResult | np.ndarray,
    held_out: EvalResult | np.ndarray,
    n_boot: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Gap:
    """Gap of normalized returns (raw returns where no normalization exists), with a percentile
    bootstrap CI that resamples the train and held-out episodes independently.

    This is the gap of one run, and its CI measures evaluation noise only; across training seeds
    use :func:`game_estimate` (what ``rlgen report`` does)."""
    normalized = not (isinstance(train, EvalResult) and train.normalized is None)
    a = np.asarray(train.scores if isinstance(train, EvalResult) else train, dtype=np.float64)
    b = np.asarray(held_out.scores if isinstance(held_out, EvalResult) else held_out, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        raise RlgenError("generalization_gap needs at least one train and one held-out episode")
    low, high = episode_gap_ci(a, b, n_boot, confidence, seed)
    return Gap(
        train_mean=float(a.mean()),
        held_out_mean=float(b.mean()),
        gap=float(a.mean() - b.mean()),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        normalized=normalized,
    )


@dataclasses.dataclass(frozen=True)
class GameEstimate:
    """Train, held-out and gap of one agent on one game.

    Attributes:
        runs: number of runs (each with both a train and a held-out evaluation).
        ci_over: ``"runs"`` (bootstrap over run scores) or ``"episodes"`` (1 run: evaluation noise only).
        train_runs, held_out_runs: run scores, shape ``(runs,)``, in the order given.
    """

    runs: int
    ci_over: str
    train: Estimate
    held_out: Estimate
    gap: Estimate
    train_runs: np.ndarray
    held_out_runs: np.ndarray


def game_estimate(train: Sequence[np.ndarray], held_out: Sequence[np.ndarray], n_boot: int = 10_000,
                  confidence: float = CONFIDENCE, seed: int = 0) -> GameEstimate:  # fmt: skip
    """Estimates from per-run episode scores: ``train[i]`` and ``held_out[i]`` are the episode scores
    (shape ``(episodes,)``) of run ``i`` on the two level sets."""
    if len(train) != len(held_out) or not train:
        raise ValueError(f"need paired train and held-out scores of at least one run, got {len(train)} and {len(held_out)}")
    tr = np.array([np.mean(np.asarray(s, dtype=np.float64)) for s in train])
    ho = np.array([np.mean(np.asarray(s, dtype=np.float64)) for s in held_out])
    n = len(tr)
    if n == 1:
        a, b = np.asarray(train[0], dtype=np.float64), np.asarray(held_out[0], dtype=np.float64)
        return GameEstimate(1, "episodes", Estimate(float(tr[0]), bootstrap_mean_ci(a, n_boot, confidence, seed)),
                            Estimate(float(ho[0]), bootstrap_mean_ci(b, n_boot, confidence, seed)),
                            Estimate(float(tr[0] - ho[0]), episode_gap_ci(a, b, n_boot, confidence, seed)), tr, ho)  # fmt: skip
    # One resample of runs for all three, so the gap replicate is exactly train minus held-out of the
    # same resampled runs (the gap is paired within a run).
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    boot_tr, boot_ho = tr[idx].mean(axis=1), ho[idx].mean(axis=1)
    return GameEstimate(n, "runs", Estimate(float(tr.mean()), _interval(boot_tr, confidence)), Estimate(float(ho.mean()), _interval(boot_ho, confidence)),
                        Estimate(float((tr - ho).mean()), _interval(boot_tr - boot_ho, confidence)), tr, ho)  # fmt: skip


# --- across games ------------------------------------------------------------------------------------


def _resample_runs(scores: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` stratified resamples of a ``(runs, games)`` matrix: runs drawn with replacement within
    each game independently. Returns ``(reps, runs, games)``."""
    runs, games = scores.shape
    idx = rng.integers(0, runs, size=(reps, runs, games))
    return np.take_along_axis(np.broadcast_to(scores, (reps, runs, games)), idx, axis=1)


def stratified_bootstrap(scores: np.ndarray, statistic: Callable[[np.ndarray], float], reps: int = 2000, confidence: float = CONFIDENCE,
                         seed: int = 0, batched: Callable[[np.ndarray], np.ndarray] | None = None) -> Estimate:  # fmt: skip
    """``statistic`` of a ``(runs, games)`` matrix with a stratified-bootstrap percentile CI; the CI is
    None with fewer than 2 runs (resampling one run gives the point back: no evidence of spread).

    ``batched``, when given, computes the statistic of every replicate at once from a
    ``(reps, runs, games)`` array (it must equal ``statistic`` replicate by replicate).
    """
    scores = np.asarray(scores, dtype=np.float64)
    value = float(statistic(scores))
    if scores.shape[0] < 2:
        return Estimate(value, None)
    resampled = _resample_runs(scores, reps, np.random.default_rng(seed))
    boot = batched(resampled) if batched is not None else np.array([statistic(m) for m in resampled])
    return Estimate(value, _interval(boot, confidence))


def aggregate_metrics() -> dict[str, Callable[[np.ndarray], float]]:
    """rliable's aggregates by name, each taking a ``(runs, games)`` matrix."""
    from rliable import metrics

    return {"IQM": metrics.aggregate_iqm, "mean": metrics.aggregate_mean, "median": metrics.aggregate_median,
            "optimality gap": metrics.aggregate_optimality_gap}  # fmt: skip


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


#: The same aggregates over a batch of replicates ``(reps, runs, games)`` -> ``(reps,)``: one scipy call
#: each instead of one per replicate (rliable's scipy-based IQM costs ~1 ms a call, 2,000 calls a CI).
BATCHED_METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "IQM": lambda x: scipy.stats.trim_mean(_flat(x), 0.25, axis=1),
    "mean": lambda x: x.mean(axis=1).mean(axis=1),
    "median": lambda x: np.median(x.mean(axis=1), axis=1),
    "optimality gap": lambda x: 1.0 - np.minimum(_flat(x), 1.0).mean(axis=1),
}


def aggregates(scores: np.ndarray, reps: int = 2000, confidence: float = CONFIDENCE, seed: int = 0) -> dict[str, Estimate]:
    """IQM, mean, median and optimality gap (threshold 1) of a ``(runs, games)`` matrix, with
    stratified bootstrap CIs (the same resamples for every metric: one seed). Point values are
    rliable's functions; replicates their batched equivalents (:data:`BATCHED_METRICS`)."""
    return {name: stratified_bootstrap(scores, fn, reps, confidence, seed, batched=BATCHED_METRICS[name]) for name, fn in aggregate_metrics().items()}


def _pairwise_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 per replicate and game: the Mann-Whitney U of x over y divided by
    ``nx * ny``. ``x``: ``(reps, nx, games)``, ``y``: ``(reps, ny, games)``; returns ``(reps, games)``."""
    gt = (x[:, :, None, :] > y[:, None, :, :]).mean(axis=(1, 2))
    eq = (x[:, :, None, :] == y[:, None, :, :]).mean(axis=(1, 2))
    return gt + 0.5 * eq


def probability_of_improvement(x: np.ndarray, y: np.ndarray, reps: int = 2000, confidence: float = CONFIDENCE, seed: int = 0) -> Estimate:
    """P(X > Y): the probability that a run of X beats a run of Y on a game, averaged over games.

    ``x``: ``(runs_x, games)``, ``y``: ``(runs_y, games)`` run scores on the same games (same column
    order). The CI resamples X's and Y's runs independently within each game; it is None when either
    side has a single run.
    """
    from rliable import metrics

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X and Y must be scored on the same games, got {x.shape[1]} and {y.shape[1]} columns")
    value = float(metrics.probability_of_improvement(x, y))
    if x.shape[0] < 2 or y.shape[0] < 2:
        return Estimate(value, None)
    rng = np.random.default_rng(seed)
    boot = _pairwise_improvement(_resample_runs(x, reps, rng), _resample_runs(y, reps, rng)).mean(axis=1)
    return Estimate(value, _interval(boot, confidence))


@dataclasses.dataclass(frozen=True)
class Profile:
    """Performance profile: ``fraction[i]`` of all runs x games with score above ``taus[i]``;
    ``low``/``high`` its stratified bootstrap band (None with a single run)."""

    taus: np.ndarray
    fraction: np.ndarray
    low: np.ndarray | None
    high: np.ndarray | None


def performance_profile(scores: np.ndarray, taus: np.ndarray, reps: int = 2000, confidence: float = CONFIDENCE, seed: int = 0) -> Profile:
    """Run-score distribution of a ``(runs, games)`` matrix at thresholds ``taus`` (rliable's
    "score distribution" profile) with a stratified bootstrap band."""
    scores, taus = np.asarray(scores, dtype=np.float64), np.asarray(taus, dtype=np.float64)
    fraction = (scores[..., None] > taus).mean(axis=(0, 1))
    if scores.shape[0] < 2:
        return Profile(taus, fraction, None, None)
    boot = (_resample_runs(scores, reps, np.random.default_rng(seed))[..., None] > taus).mean(axis=(1, 2))  # (reps, taus)
    alpha = (1 - confidence) / 2
    return Profile(taus, fraction, np.quantile(boot, alpha, axis=0), np.quantile(boot, 1 - alpha, axis=0))
