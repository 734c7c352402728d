"""Where serialized snapshots are stored: the :class:`Sink` interface and its backends."""

from rtsave_async.sinks.base import Sink
from rtsave_async.sinks.local import IO_BACKENDS, LocalSink
from rtsave_async.sinks.memory import MemorySink

__all__ = ["IO_BACKENDS", "LocalSink", "MemorySink", "Sink"]
