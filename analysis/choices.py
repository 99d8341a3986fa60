"""The fitting options' allowed values, importable without numpy (the CLI builds its parser from them)."""

from __future__ import annotations

ALL_FORMS = ("chinchilla", "kaplan_n", "kaplan_d", "frontier")  # scaling-law forms (SCALING.md §2)
METHODS = ("vp", "grid", "both")  # variable projection, grid search, both compared
SCHEMES = ("auto", "cell", "cell_seed", "wild")  # cluster-bootstrap schemes (analysis.bootstrap)
LOSSES = ("final", "smoothed")  # which validation loss of a cell is fitted
D_UNITS = ("events", "hits")  # what D counts
GROUP_BY = ("arch",)  # cells columns a study is split by for one law per group (`fit-laws --by`)
