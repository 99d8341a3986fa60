"""Fit scaling laws to a study and save them in its catalog: the one path of ``fit-laws`` and the
quickstart, so that every row of the catalog's ``fits`` table records the same settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from analysis.choices import ALL_FORMS
from fm4npp.errors import FitError, StoreError
from fm4npp.store import catalog


@dataclass(frozen=True)
class FitSettings:
    """What a fit depends on besides the data (each row of ``fits`` stores them with its form)."""

    forms: tuple[str, ...] = ("chinchilla",)  # analysis.choices.ALL_FORMS
    method: str = "vp"  # analysis.choices.METHODS
    bootstrap: int = 0  # cluster-bootstrap resamples; 0: delta method
    bootstrap_scheme: str = "auto"  # analysis.choices.SCHEMES
    loss: str = "final"  # analysis.choices.LOSSES
    d_unit: str = "events"  # analysis.choices.D_UNITS
    by: str | None = None  # analysis.choices.GROUP_BY: one law per group of cells (model family)

    @classmethod
    def for_form(cls, form: str, **kwargs: Any) -> FitSettings:
        """``form`` as the CLI spells it (``kaplan-n``, ``all``) → settings."""
        forms = ALL_FORMS if form == "all" else (form.replace("-", "_"),)
        return cls(forms=tuple(forms), **kwargs)

    def record(self, form: str) -> dict[str, Any]:
        """The settings stored with one fitted form."""
        out = asdict(self)
        del out["forms"]
        return {"form": form, **out}


def fit_points(path: Path, settings: FitSettings) -> list[dict[str, Any]]:
    """Fit a CSV/Parquet file of points (nothing saved)."""
    from analysis.inputs import load_points

    return _summarise(load_points(path), settings)


def fit_study(study_dir: Path, settings: FitSettings) -> list[dict[str, Any]]:
    """Fit the study's finished cells and save every form's result in its catalog (``fits``).

    With ``settings.by`` (``arch``) one law per group of cells (``analysis.summary.summarise_groups``:
    each result carries ``group``, e.g. ``arch=mamba2``, and its held-out-largest-size check), saved
    with the group as the row's ``group_key``; every group is fitted before anything is saved.
    """
    from analysis.inputs import from_cells
    from analysis.summary import summarise_groups

    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise StoreError(f"{study_dir}: no such study directory")
    _check(settings)
    cells = catalog.finished_cells(study_dir)
    if settings.by is None:
        data = from_cells(cells, settings.loss, settings.d_unit, str(study_dir))
        results = _summarise(data, settings)
    else:
        results = summarise_groups(
            cells, settings.by, settings.forms, settings.method, settings.bootstrap,
            scheme=settings.bootstrap_scheme, loss=settings.loss, d_unit=settings.d_unit,
            source=str(study_dir),
        )  # fmt: skip
    for res in results:
        catalog.save_fit(
            study_dir, res["form"], settings.record(res["form"]), res, group_key=res.get("group")
        )
    return results


def _check(settings: FitSettings) -> None:
    if settings.bootstrap < 0:
        raise FitError(f"fit-laws: --bootstrap must be >= 0, got {settings.bootstrap}")


def _summarise(data: Any, settings: FitSettings) -> list[dict[str, Any]]:
    from analysis.summary import summarise

    _check(settings)
    return summarise(
        data, settings.forms, settings.method, settings.bootstrap, scheme=settings.bootstrap_scheme
    )
