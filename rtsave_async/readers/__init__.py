"""Readers of a save directory."""

from rtsave_async.readers.local import iter_records, list_snapshot_files, load_records

__all__ = ["iter_records", "list_snapshot_files", "load_records"]
