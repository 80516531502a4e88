r"""Stability of a learning rule's update map and the curvature bound it predicts.

A rule trains by :math:`\theta \leftarrow \theta - \eta \hat g(\theta)`; its
linearization :math:`I - \eta J_{rule}` decides which minima it can stay at.
Exact GD (:math:`J = H`) needs :math:`\lambda_{max} < 2/\eta`; a rule whose gain
along the top Hessian eigenvector is :math:`c < 1` can stay up to about
:math:`2/(\eta c)`.

* :mod:`~credit.theory.update_map`: :func:`make_rule_jvp` (:math:`v \mapsto
  J_{rule} v`, jax.jvp through the rule; finite differences for rules with
  ``stop_gradient``), :func:`linearize_rule`, :func:`make_rule_grad`;
* :mod:`~credit.theory.stability`: :func:`arnoldi`, :func:`update_map_spectrum`
  (Ritz values of :math:`I - \eta J`), :func:`alignment_factor` (:math:`c`),
  :func:`predicted_bound` (:math:`2/(\eta c)`);
* :mod:`~credit.theory.tracking`: :func:`make_theory_probe`, the training-time
  probe (config block ``theory``).

The remedies the argument suggests run in the training step
(:mod:`credit.training.remedies`); the reproduction that tests the argument and
its report live in :mod:`credit.reproduction`.
"""

from credit.theory.stability import (
  ArnoldiResult,
  UpdateMapSpectrum,
  alignment_factor,
  arnoldi,
  predicted_bound,
  update_map_spectrum,
)
from credit.theory.tracking import make_theory_probe
from credit.theory.update_map import (
  dense_matrix,
  jvp_operator,
  linearize_rule,
  make_rule_grad,
  make_rule_jvp,
)

__all__ = [
  "ArnoldiResult",
  "UpdateMapSpectrum",
  "alignment_factor",
  "arnoldi",
  "dense_matrix",
  "jvp_operator",
  "linearize_rule",
  "make_rule_grad",
  "make_rule_jvp",
  "make_theory_probe",
  "predicted_bound",
  "update_map_spectrum",
]
