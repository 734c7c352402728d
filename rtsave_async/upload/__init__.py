"""Copying a run from its local spool folder to object storage, for the writer and ``rtsave sync``."""

from rtsave_async.upload.uploader import UploadConflict, Uploader

__all__ = ["UploadConflict", "Uploader"]
