"""Servers the tests start on 127.0.0.1: moto's S3 server (a real S3 API over HTTP) and the AWS
settings that send DVC to it; a PostgreSQL server (the shared storage of a hyperparameter study).
Nothing leaves the machine."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import skip_unless_ci

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


POSTGRES_PASSWORD = "imgclf-test-Secret"  # findable if it leaks into an error message or git


def postgres_binaries() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian keeps them off PATH), or None."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server of its own on 127.0.0.1 (a new cluster in a temporary folder), with the user
    ``tuner`` (a password) and the database ``studies``; its URL. PostgreSQL will not run as root:
    there, the server runs as the ``postgres`` user that Debian's package creates."""
    binaries = postgres_binaries()
    if binaries is None:
        skip_unless_ci("PostgreSQL is not installed (make test installs Debian's postgresql package where it "
                       "runs as root)")
    as_server = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="imgclf-postgres-"))  # not under pytest's root-only folder
    if as_server:
        shutil.chown(folder, "postgres", "postgres")
    data, password_file, port = folder / "data", folder / "password", free_port()
    password_file.write_text(POSTGRES_PASSWORD)
    if as_server:
        shutil.chown(password_file, "postgres", "postgres")

    def server_command(*args: str) -> None:
        result = subprocess.run([*as_server, *args], capture_output=True, text=True, check=False, cwd=folder)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(args)}: {result.stdout}{result.stderr}")

    try:
        server_command(str(binaries / "initdb"), "-D", str(data), "-U", "tuner", "--pwfile", str(password_file),
                       "--auth", "scram-sha-256")
        server_command(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-o",
                       f"-h 127.0.0.1 -p {port} -k {folder}", "start")
        subprocess.run([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "tuner", "studies"],
                       env={**os.environ, "PGPASSWORD": POSTGRES_PASSWORD}, check=True, capture_output=True)
        yield f"postgresql://tuner:{POSTGRES_PASSWORD}@127.0.0.1:{port}/studies"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_server, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, check=False, cwd=folder)
        shutil.rmtree(folder, ignore_errors=True)
