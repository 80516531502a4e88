"""Curvature of the exact loss: HVPs, Lanczos, power iteration, trace, density, flatness.

Everything is a pure function of pytrees, jit- and vmap-able, with static
iteration counts:

* :func:`make_hvp`: ``v -> H v`` (forward-over-reverse) on a fixed batch, over
  a parameter subset, optionally chunked over examples;
* :func:`arnoldi`: the one Krylov loop (full reorthogonalization, restarts
  after a breakdown, optionally inside the free subspace of a mask);
* :func:`lanczos_top_k` / :func:`lanczos_tridiag`: Lanczos read off it
  (top-k signed eigenpairs, the tridiagonal for SLQ);
* :func:`power_iteration`: the reference protocol (BiolHessRNN), as baseline;
* :func:`hutchinson_trace`, :func:`slq_density`, :func:`relative_flatness`;
* :func:`make_curvature_probe`: the training-time probe
  (:mod:`credit.curvature.tracking`).
"""

from credit.curvature.density import SpectralDensity, gauss_quadrature, slq_density, smooth_density
from credit.curvature.flatness import (
  flatness_operator,
  relative_flatness,
  relative_flatness_dense,
)
from credit.curvature.hvp import make_grad, make_hvp, select
from credit.curvature.krylov import ArnoldiResult, arnoldi
from credit.curvature.lanczos import (
  LanczosResult,
  TopK,
  lanczos_top_k,
  lanczos_tridiag,
  tridiagonal,
)
from credit.curvature.power_iteration import PowerIterationResult, power_iteration
from credit.curvature.trace import TraceEstimate, hutchinson_trace, rademacher_like
from credit.curvature.tracking import make_curvature_probe

__all__ = [
  "ArnoldiResult",
  "LanczosResult",
  "PowerIterationResult",
  "SpectralDensity",
  "TopK",
  "TraceEstimate",
  "arnoldi",
  "flatness_operator",
  "gauss_quadrature",
  "hutchinson_trace",
  "lanczos_top_k",
  "lanczos_tridiag",
  "make_curvature_probe",
  "make_grad",
  "make_hvp",
  "power_iteration",
  "rademacher_like",
  "relative_flatness",
  "relative_flatness_dense",
  "select",
  "slq_density",
  "smooth_density",
  "tridiagonal",
]
