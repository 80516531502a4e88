"""Analysis of sweep results: statistics (:mod:`~credit.analysis.stats`), matched fit
(:mod:`~credit.analysis.fit`), where a run stops getting sharper
(:mod:`~credit.analysis.edge_of_stability`) and figures (:mod:`~credit.analysis.figures`).
All read tidy rows as in a sweep's ``results.csv``.
"""
