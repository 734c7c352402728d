"""The snapshot categories and the file prefix each one uses on disk.

The folder names and prefixes follow the layout our users already read::

    <save_dir>/episodes/episodes_<YYYYMMDD_HHMMSS>_<seq>.json
    <save_dir>/environment_states/env_states_<YYYYMMDD_HHMMSS>_<seq>.json
    <save_dir>/learning_metrics/learning_metrics_<YYYYMMDD_HHMMSS>_<seq>.json
    <save_dir>/checkpoints/checkpoint_<YYYYMMDD_HHMMSS>_<seq>.json
    <save_dir>/hyperparameters/hyperparameters_<YYYYMMDD_HHMMSS>_<seq>.json
"""

from __future__ import annotations

import re

EPISODES = "episodes"
ENVIRONMENT_STATES = "environment_states"
LEARNING_METRICS = "learning_metrics"
CHECKPOINTS = "checkpoints"
HYPERPARAMETERS = "hyperparameters"

#: Folder name -> file-name prefix, for the five standard categories.
FILE_PREFIXES: dict[str, str] = {
    EPISODES: "episodes",
    ENVIRONMENT_STATES: "env_states",
    LEARNING_METRICS: "learning_metrics",
    CHECKPOINTS: "checkpoint",
    HYPERPARAMETERS: "hyperparameters",
}

STANDARD_CATEGORIES: tuple[str, ...] = tuple(FILE_PREFIXES)

_CATEGORY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def validate_category(category: str) -> str:
    """Return ``category`` if it is a safe folder name, else raise ``ValueError``.

    A category becomes a folder under ``save_dir``; it must be 1-64 characters of
    letters, digits, ``_`` or ``-`` (starting with a letter or digit), so that it can
    never name a path outside ``save_dir`` (``..``, ``/``, NUL and the like).
    """
    if not isinstance(category, str) or not _CATEGORY_PATTERN.fullmatch(category):
        raise ValueError(
            f"invalid snapshot category {category!r}: use 1-64 letters, digits, '_' or '-'"
        )
    return category


def file_prefix(category: str) -> str:
    """The file-name prefix for ``category`` (its own name for custom categories)."""
    return FILE_PREFIXES.get(category, category)
