"""Reconciliation: the books against the CRM (``match``, ``flags``, ``run``).

Polars allocates through its own jemalloc, which it sets to keep freed pages for 0.5-1 s
before giving them back (``dirty_decay_ms:500,muzzy_decay_ms:1000``, then whatever
``_RJEM_MALLOC_CONF`` adds: polars/__init__.py, pola-rs/polars#18088): each stage's
temporary buffers (a million-row group-by on client keys, the key frames) stacked up in
the process's resident memory. Returning them at once took the peak of a 1M x 1M run
from 954 to 828 MB (``bench/reconcile.py``; the bar is 1 GB, and more cores mean more
per-thread buffers), for ~1 s more of its 3-4 s.
jemalloc reads this when it starts, i.e. when polars is first imported: every module of
this package imports polars, so importing any of them sets it first. An admin's own
``_RJEM_MALLOC_CONF`` wins.
"""

import os

os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
