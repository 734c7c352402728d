"""Where serialized snapshots are stored."""

from rtsave_async.sinks.local import IO_BACKENDS, LocalSink

__all__ = ["IO_BACKENDS", "LocalSink"]
