"""The reproduction: its sweeps, and the report that answers the paper's claims from their files.

* :mod:`~credit.reproduction.plan`: the sweeps of a reproduction config (each
  task's base sweep and its remedy variants; ``experiments/reproduce.py``);
* :mod:`~credit.reproduction.numbers`: every number of a report, from the
  results files of a sweep or a reproduction workdir (fit, matched fit,
  distinct rules, contrasts, theory);
* :mod:`~credit.reproduction.claims`: the claims x tasks verdicts, Holm-corrected;
* :mod:`~credit.reproduction.tables`: the markdown tables;
* :mod:`~credit.reproduction.figures`: λ_max against the bound, the remedies;
* :mod:`~credit.reproduction.document`: ``REPORT.md`` (``experiments/report.py``).
"""
