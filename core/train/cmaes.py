"""CMA-ES for the controller (Hansen, 2016, "The CMA Evolution Strategy: A Tutorial"; Ha & Schmidhuber, 2018,
sec. 3): the ``cma`` package behind a small ask / tell interface whose state round-trips through tensors, so a run
resumes exactly (``train-controller --resume``)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from core.errors import CheckpointError


# -- CMA-ES ----------------------------------------------------------------------------------------------------
def _import_cma() -> tuple[Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cma warns at import when matplotlib is missing
        import cma
        from cma.sigma_adaptation import CMAAdaptSigmaCSA
    return cma, CMAAdaptSigmaCSA


class CMAES:
    """Hansen's CMA-ES (the ``cma`` package) maximising a return, with a state that round-trips through tensors.

    Options: cumulative step-size adaptation (CSA, as the ``cma`` 2.x that Ha's estool used), active covariance
    update (cma's default), no mirrored sampling, no output; the caller sets the run length (``es.stop()``'s
    termination criteria are never consulted).
    Samples come from a dedicated Mersenne Twister seeded with ``seed`` (cma's ``randn`` option), so nothing
    else using NumPy's global RNG changes the run. ``cma`` minimises; :meth:`tell` negates the returns.

    Args:
        x0: float64 (n,) initial mean. sigma0: initial step size. popsize: candidates per generation (>= 4).
        seed: sampling seed.
    """

    def __init__(self, x0: np.ndarray, sigma0: float, popsize: int, seed: int) -> None:
        cma, csa = _import_cma()
        self._rng = np.random.RandomState(seed)
        opts = {
            "popsize": popsize, "randn": self._rng.randn, "seed": math.nan, "AdaptSigma": csa, "CMA_mirrors": 0,
            "verbose": -9, "verb_disp": 0, "verb_log": 0,
        }  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._es = cma.CMAEvolutionStrategy(np.asarray(x0, np.float64), sigma0, opts)
        self.popsize = popsize

    @property
    def sigma(self) -> float:
        """Overall step size."""
        return float(self._es.sigma)

    @property
    def mean(self) -> np.ndarray:
        """The distribution mean m (Hansen, 2016, eq. 9 after :meth:`tell`), float64 (n,): a copy."""
        return np.array(self._es.mean, np.float64)

    def ask(self) -> np.ndarray:
        """Sample a generation: float64 (popsize, n)."""
        return np.asarray(self._es.ask(), np.float64)

    def tell(self, candidates: np.ndarray, returns: np.ndarray) -> None:
        """Update from the candidates of :meth:`ask` and their fitness (returns, higher is better), (popsize,)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._es.tell(list(candidates), [-float(r) for r in returns])

    def state_dict(self) -> dict[str, Any]:
        """The state that determines the rest of the run, as tensors and numbers: mean m, step size sigma,
        covariance C with its eigendecomposition (B, D, refreshed lazily), evolution paths p_c and p_sigma,
        counters, and the sampling RNG."""
        es, sm = self._es, self._es.sm
        _, keys, pos, has_gauss, cached = self._rng.get_state(legacy=True)
        t = torch.from_numpy
        return {
            "mean": t(np.array(es.mean, np.float64)), "sigma": float(es.sigma),
            "C": t(np.array(sm.C)), "B": t(np.array(sm.B)), "D": t(np.array(sm.D)),
            "pc": t(np.array(es.pc)), "pc2": t(np.array(es.pc2)), "ps": t(np.array(es.adapt_sigma.ps)),
            "sigma_delta": float(es.adapt_sigma.delta),
            "countiter": int(es.countiter), "countevals": int(es.countevals),
            "count_tell": int(sm.count_tell), "last_update": int(sm.last_update), "count_eigen": int(sm.count_eigen),
            "rng_keys": t(np.asarray(keys, np.int64)), "rng_pos": int(pos), "rng_has_gauss": int(has_gauss),
            "rng_cached_gaussian": float(cached),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the run saved by :meth:`state_dict` exactly (same samples as if it had never stopped).

        Raises:
            CheckpointError: the state is for another dimension or incomplete.
        """
        try:
            mean = state["mean"].numpy()
            if mean.shape != np.shape(self._es.mean):
                raise CheckpointError(f"CMA-ES state has dimension {mean.shape[0]}, expected {len(self._es.mean)}")
            es, sm = self._es, self._es.sm
            # one throw-away generation creates the attributes cma initialises lazily; everything it changed
            # that matters for the rest of the run is overwritten below
            self.tell(self.ask(), np.zeros(self.popsize))
            es.mean = mean.copy()
            es.sigma = float(state["sigma"])
            sm.C, sm.B, sm.D = state["C"].numpy().copy(), state["B"].numpy().copy(), state["D"].numpy().copy()
            sm.count_tell, sm.last_update = int(state["count_tell"]), int(state["last_update"])
            sm.count_eigen = int(state["count_eigen"])
            es._updateBDfromSM(sm)
            es.pc, es.pc2 = state["pc"].numpy().copy(), state["pc2"].numpy().copy()
            es.adapt_sigma.ps = state["ps"].numpy().copy()
            es.adapt_sigma.delta = float(state["sigma_delta"])
            es.countiter, es.countevals = int(state["countiter"]), int(state["countevals"])
            keys = state["rng_keys"].numpy().astype(np.uint32)
            rng_state = ("MT19937", keys, int(state["rng_pos"]), int(state["rng_has_gauss"]),
                         float(state["rng_cached_gaussian"]))  # fmt: skip
            self._rng.set_state(rng_state)
        except (KeyError, AttributeError, TypeError) as exc:
            raise CheckpointError(f"CMA-ES resume state is incomplete ({type(exc).__name__}: {exc})") from None
