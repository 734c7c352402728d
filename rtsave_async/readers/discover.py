"""Finding the runs inside a parent folder (``models/`` holding ``<run>/realtime_data``, a sweep's prefix).

A folder is a run if it has ``run.json`` or a standard category folder (the layout of
runs written before ``run.json``); the search stops at a run, so a run's own folders
are never searched.
"""

from __future__ import annotations

import os

from rtsave_async.names import RUN_MANIFEST_KEY, STANDARD_CATEGORIES
from rtsave_async.readers.store import RunStore, open_store

#: How many folder levels below the parent are searched (``models/<run>/realtime_data`` is 2).
MAX_DEPTH = 3


def looks_like_run(store: RunStore) -> bool:
    """True if ``store`` holds a run (it may still be empty: a writer just started)."""
    return store.exists(RUN_MANIFEST_KEY) or any(folder in STANDARD_CATEGORIES for folder in store.folders())


def find_runs(path_or_store: str | os.PathLike[str] | RunStore, max_depth: int = MAX_DEPTH,
              storage_options: dict | None = None) -> dict[str, RunStore]:
    """The runs at or below ``path_or_store``: relative name (``""`` for the folder itself,
    ``"demo/realtime_data"`` for one inside) -> its store, sorted by name.

    :raises FileNotFoundError: naming the path, if there is no such folder
    """
    root = open_store(path_or_store, storage_options)
    if not root.is_run_root():
        raise FileNotFoundError(f"{root.url()}: no such folder")
    found: dict[str, RunStore] = {}
    pending = [("", root, 0)]
    while pending:
        name, store, depth = pending.pop()
        if looks_like_run(store):
            found[name] = store
        elif depth < max_depth:
            pending.extend((f"{name}/{folder}" if name else folder, store.child(folder), depth + 1)
                           for folder in store.folders() if not folder.startswith("."))
    return dict(sorted(found.items()))
