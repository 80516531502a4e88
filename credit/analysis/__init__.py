"""Analysis of sweep results: statistics (:mod:`~credit.analysis.stats`) and figures
(:mod:`~credit.analysis.figures`). Both read tidy rows as in a sweep's ``results.csv``.
"""
