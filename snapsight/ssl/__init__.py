"""Self-supervised pretraining (SimCLR): the view transform, projection head, NT-Xent loss, the task for the
shared training loop, and the recipe as two calls (:func:`load_pretrain_config`, :func:`run_pretrain`).

This is ``snapsight.ssl``; it is never importable as top-level ``ssl`` (that would shadow Python's own
``ssl`` module). Run snapsight as a module or console script, never as ``python snapsight/...py``.
"""
if __name__ == "ssl":  # the snapsight/ folder is on sys.path: say so, instead of an AttributeError deep in http code
    raise SystemExit(
        "error: snapsight/ssl was imported as Python's `ssl` module because the snapsight/ folder is on sys.path "
        "(a file inside snapsight/ was run as a script); run `python -m snapsight ...` or the `snapsight` command"
    )

from .pretrain import completed_run, load_pretrain_config, run_pretrain  # noqa: E402
from .simclr import PretrainConfig, SimCLRTask  # noqa: E402

__all__ = ["PretrainConfig", "SimCLRTask", "completed_run", "load_pretrain_config", "run_pretrain"]
