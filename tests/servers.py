"""Servers the tests start on 127.0.0.1: moto's S3 server (a real S3 API over HTTP) and the AWS
settings that send DVC to it. Nothing leaves the machine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ACCESS_KEY = "imgclf-test-access-key"  # moto takes any key; this one is findable if it leaks into git


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_s3_server(log: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server on 127.0.0.1 in its own process; its endpoint URL once it answers."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, **env})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"moto's S3 server exited: {log.read_text()[-3000:]}")
            time.sleep(0.2)
    server.kill()
    pytest.fail("moto's S3 server did not answer within 60 s")


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGCONT)  # in case a test left it paused
    server.terminate()
    server.wait(timeout=30)


@contextmanager
def s3_bucket(root: Path, bucket: str) -> Iterator[str]:
    """moto's S3 server holding an empty ``bucket``, and the AWS variables every command of the block
    sees (the usual way to give DVC credentials; none are written into a repository). Its endpoint URL."""
    server, endpoint = start_s3_server(root / "moto.log")
    with pytest.MonkeyPatch.context() as environment:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "DVC_STUDIO_TOKEN", "STUDIO_TOKEN"):
            environment.delenv(name, raising=False)
        environment.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        environment.setenv("AWS_SECRET_ACCESS_KEY", "imgclf-test-secret")
        environment.setenv("AWS_DEFAULT_REGION", "us-east-1")
        environment.setenv("AWS_CONFIG_FILE", str(root / "no-aws-config"))  # not this machine's ~/.aws
        environment.setenv("AWS_SHARED_CREDENTIALS_FILE", str(root / "no-aws-credentials"))
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        try:
            yield endpoint
        finally:
            stop(server)
