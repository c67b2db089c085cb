"""``abm analyze``: the report of a batch folder, a run file, or a comparison of batches.

>>> analyze("runs/example")                     # doctest: +SKIP
PosixPath('runs/example/report/report.md')
>>> analyze("runs/default/default_seed1.h5")    # one run: patient panel  # doctest: +SKIP
>>> analyze(["runs/trial_a", "runs/trial_b"])   # comparison report  # doctest: +SKIP

The reports themselves are :mod:`analysis.report` (a batch, a run) and
:mod:`analysis.compare` (two or more batches); this module only picks one.
"""

from __future__ import annotations

from pathlib import Path

from abm.errors import FileFormatError
from abm.io.h5file import PART_SUFFIX
from analysis.io import describe_file
from analysis.compare import compare_batches
from analysis.report import batch_report, run_report


def analyze(source, out=None, *, by=(), covariate: str = "burden_cells", html_page: bool = True,
            bootstrap: int = 0, progress: bool | None = None, quiet: bool = True) -> Path:
    """Write the report of a batch folder or a run file; returns the markdown file.

    Args:
        source: a batch folder (``runs/<batch>``) or one run file (``.h5``);
            or a list of batch folders: with two or more, the comparison
            report of :func:`analysis.compare.compare_batches` (one trial per
            folder; ``by`` must be empty then).
        out: report folder (default: ``<batch>/report`` or ``<file stem>_report``
            beside the file; for a comparison ``compare_<a>_vs_<b>`` beside
            the first folder).
        by: extra run coordinates to group the risk table by.
        covariate: continuous covariate of the risk curve.
        html_page: also write ``report.html``.
        bootstrap: if > 0, also percentile bootstrap intervals with that many
            resamples (``boot_lo``, ``boot_hi`` in ``risk.csv``).
        progress: progress bars while reading (None: on a terminal, many files).
        quiet: no status lines on stderr.

    Raises:
        FileFormatError: no such path, no readable complete runs, a bad file
            (a run file is refused when unfinished, damaged or incomplete; a
            batch's damaged runs are skipped, one warning line each).
    """
    if not isinstance(source, (str, Path)):
        sources = [Path(x) for x in source]
        if len(sources) != 1:
            if by:
                raise FileFormatError("--by groups the report of one batch; a comparison "
                                      "groups by trial (give one folder, or drop --by)")
            return compare_batches(sources, out, covariate=covariate, html_page=html_page,
                                   bootstrap=int(bootstrap), progress=progress, quiet=quiet)
        source = sources[0]
    source = Path(source)
    if not source.exists():
        raise FileFormatError(f"{source}: no such file or folder")
    if source.is_dir():
        return batch_report(source, out, by=tuple(by), covariate=covariate,
                            html_page=html_page, bootstrap=int(bootstrap), progress=progress,
                            quiet=quiet)
    check_run_file(source)
    return run_report(source, out, html_page=html_page, quiet=quiet)


def check_run_file(path: Path) -> None:
    """Refuse a run file the report must not trust: unfinished, damaged or incomplete.

    Every dataset is read (as ``abm inspect`` does), so a corrupted chunk
    anywhere in the file is found, not only in the groups the report reads.
    """
    if path.name.endswith(PART_SUFFIX):
        raise FileFormatError(f"{path}: an unfinished run (.part file), not a finished run "
                              "file; continue it with 'abm run CONFIG --resume'")
    info = describe_file(path, verify=True)
    if int(info["provenance"].get("complete", 1) or 0) != 1:
        raise FileFormatError(f"{path}: run not complete (complete = 0); continue it with "
                              "'abm run CONFIG --resume'")


__all__ = ["analyze"]
