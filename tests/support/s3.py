"""A real S3-compatible server on loopback for the tests: moto's ``ThreadedMotoServer``.

It speaks the S3 HTTP API (create-only PUTs with ``If-None-Match: *`` included), so
s3fs, botocore and our uploader are exercised end to end; nothing is mocked. Stopping
and starting it again on the same port keeps the buckets (moto's backend lives in this
process), which is what an outage test needs. Child processes reach it through the
``AWS_*`` variables of :meth:`S3Server.environment`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

ACCESS_KEY = "rtsave-test-access-key"
SECRET_KEY = "rtsave-test-secret-key-never-printed"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3Server:
    """moto's S3 server on ``127.0.0.1:<port>``; :meth:`stop` and :meth:`start` again."""

    def __init__(self, port: int | None = None) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
        self.port = port or free_port()
        self._server_class = ThreadedMotoServer
        self._server = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """The variables a process needs to use this server (botocore reads them)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> None:
        self._server = self._server_class(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"moto server did not start on port {self.port}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1")

    def new_bucket(self) -> str:
        name = f"rtsave-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every object below ``prefix`` -> its size."""
        found: dict[str, int] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = item["Size"]
        return found


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One server for the session, its ``AWS_*`` variables set in ``os.environ``."""
    pytest.importorskip("s3fs", reason='the S3 tests need s3fs: pip install -e ".[test]"')
    server = S3Server()
    server.start()
    saved = {name: os.environ.get(name) for name in server.environment()}
    os.environ.update(server.environment())
    try:
        yield server
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the session's server."""
    return s3_server.new_bucket()


SERVE_CODE = """
import sys
sys.path.insert(0, sys.argv[2])
from support.s3 import serve_commands
serve_commands(int(sys.argv[1]))
"""


def serve_commands(port: int) -> None:
    """Run an :class:`S3Server` on ``port`` in this process, taking ``stop`` / ``start``
    lines on stdin (answered with ``ok``), until stdin closes."""
    import sys

    server = S3Server(port)
    server.start()
    print("ok", flush=True)
    for line in sys.stdin:
        (server.stop if line.strip() == "stop" else server.start)()
        print("ok", flush=True)
    server.stop()


class S3ServerProcess(S3Server):
    """An :class:`S3Server` in a child process (for benchmarks: it then takes no CPU
    time from the measured process's GIL); :meth:`stop` and :meth:`start` keep the data."""

    def start(self) -> None:
        import subprocess
        import sys
        from pathlib import Path

        if getattr(self, "_child", None) is None:
            self._child = subprocess.Popen(
                [sys.executable, "-c", SERVE_CODE, str(self.port), str(Path(__file__).resolve().parents[1])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        else:
            self._command("start")
            return
        if self._child.stdout.readline().strip() != "ok":
            raise RuntimeError("the S3 server process did not start")

    def _command(self, word: str) -> None:
        self._child.stdin.write(word + "\n")
        self._child.stdin.flush()
        if self._child.stdout.readline().strip() != "ok":
            raise RuntimeError(f"the S3 server process did not {word}")

    def stop(self) -> None:
        if getattr(self, "_child", None) is not None:
            self._command("stop")

    def close(self) -> None:
        """End the child process (and its data)."""
        if getattr(self, "_child", None) is not None:
            self._child.stdin.close()
            self._child.wait(30)
            self._child = None
