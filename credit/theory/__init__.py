r"""Stability of a learning rule's update map, the curvature bound it predicts, and remedies.

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
  probe (config block ``theory``);
* :mod:`~credit.theory.remedies`: weight and activity noise in the training
  step (config block ``remedies``; the learning-rate remedies are the schedule
  of :func:`credit.training.optimizers.schedule`);
* :mod:`~credit.theory.reproduction` and :mod:`~credit.theory.report`: the
  sweeps of a reproduction and its ``REPORT.md`` (``experiments/reproduce.py``,
  ``experiments/report.py``).
"""

from credit.theory.remedies import Noise, noisy_loss_and_grads
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
  "Noise",
  "UpdateMapSpectrum",
  "alignment_factor",
  "arnoldi",
  "dense_matrix",
  "jvp_operator",
  "linearize_rule",
  "make_rule_grad",
  "make_rule_jvp",
  "make_theory_probe",
  "noisy_loss_and_grads",
  "predicted_bound",
  "update_map_spectrum",
]
