"""Self-supervised pretraining (SimCLR), probes and image-text alignment.

This is ``snapsight.ssl``; it is never importable as top-level ``ssl`` (that would shadow Python's own
``ssl`` module). Run snapsight as a module or console script, never as ``python snapsight/...py``.
"""
