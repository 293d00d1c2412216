"""`export(workdir, out, ...)` for either zoo kind (`python -m jaxzoo.export`)."""

from __future__ import annotations

from jaxzoo.config import INR
from jaxzoo.export import writer
from jaxzoo.inr.export import export_inr
from jaxzoo.kinds import refuse_for_inr
from jaxzoo.zoo.checkpoint import workdir_kind


def export(
    workdir,
    out,
    formats: str = "all",
    epochs: list[int] | None = None,
    threshold: float = writer.DEFAULT_THRESHOLD,
    overwrite: bool = False,
    log=print,
    optimizer_state: str = "last",
    twin_weights: str = "raw",
    with_data: bool = False,
    data_limit_gib: float = writer.bundle.DATA_LIMIT_GIB,
    split_by: str = "model",
    token_size: int | None = None,
) -> dict:
    """Exports the zoo in `workdir` to `out/<experiment>`: a classification zoo's formats
    (`jaxzoo.export.export`) or an INR zoo's layouts (`jaxzoo.inr.export.export_inr`: formats
    dwsnets_mnist, dwsnets_fmnist, nfn, arena, vectors, all; the other options keep their defaults;
    split_by, token_size: `jaxzoo.export.writer.export`)."""
    writer.check_options(formats, optimizer_state, twin_weights)
    if workdir_kind(workdir) == INR:
        given = {
            "--epochs": epochs is not None,
            "--threshold": threshold != writer.DEFAULT_THRESHOLD,
            "--optimizer_state": optimizer_state != "last",
            "--twin_weights": twin_weights != "raw",
            "--with_data": bool(with_data),
            "--data_limit_gib": data_limit_gib != writer.bundle.DATA_LIMIT_GIB,
            "--split_by": split_by != "model",
            "--token_size": token_size is not None,
        }
        refuse_for_inr(given, "an INR zoo exports its last epoch's SIRENs")
        return export_inr(workdir, out, formats, overwrite, log or (lambda message: None))
    return writer.export(
        workdir,
        out,
        formats,
        epochs,
        threshold,
        overwrite,
        log,
        optimizer_state,
        twin_weights,
        with_data,
        data_limit_gib,
        split_by,
        token_size,
    )
