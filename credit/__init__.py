"""credit: temporal credit assignment rules for RNNs, and the solutions they find.

Subpackages: ``models`` (the RNN), ``rules`` (learning rules), ``tasks``,
``curvature`` (Hessian spectra), ``training`` (compiled, seed-vmapped loops),
``theory`` (stability of a rule's update map, remedies, the reproduction
report), ``sweeps`` (sharded, resumable multi-cell runs), ``analysis``
(statistics and figures).

Importing credit sets two process-wide JAX/XLA options (see
:mod:`credit.runtime`); import it before running any JAX computation.
"""

from credit import runtime as _runtime

_runtime.configure()

__version__ = "0.1.0"
