"""End to end: a team shares one project through remote storage and a git server, as docs/team.md shows.

Person A runs the pipeline and pushes; person B clones and pulls. The remotes are real: an S3 server
(moto's, speaking the S3 API over HTTP) started by the test on 127.0.0.1, a plain shared folder, and
a bare git repository as the git server. The tests run in the order a team works: A's first run, B's
day, an interrupted pull, a remote that cannot be reached or denies access. docs/team.md's own
lines (shared experiments, the pull-request report, a model version fetched into another project)
run in tests/test_manual_commands.py, against the same kind of servers.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import command_env, digests, make_project, run, set_params, write_image_folder
from tests.servers import ACCESS_KEY, free_port, s3_bucket, start_s3_server, stop

pytestmark = pytest.mark.slow

CLASSES = ("red", "green", "blue")
BUCKET = "team-bucket"
ARTIFACT = "image-classifier"
def cached_objects(repo: Path) -> int:
    cache = repo / ".dvc" / "cache" / "files"
    return sum(1 for path in cache.rglob("*") if path.is_file()) if cache.exists() else 0


def clone(origin: Path, destination: Path) -> Path:
    run(["git", "clone", "-q", str(origin), str(destination)], destination.parent)
    return destination


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[str]:
    """The S3 server with the team's bucket; every command of the module sees its AWS variables."""
    with s3_bucket(tmp_path_factory.mktemp("s3"), BUCKET) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def team(s3, tmp_path_factory) -> dict[str, Path]:
    """Person A's repository after `dvc repro`, `dvc push` to S3 and to a shared folder, and `git push`
    of the run and its version tag to a bare repository (the team's git server)."""
    root = tmp_path_factory.mktemp("team")
    images = write_image_folder(root / "images", CLASSES, per_class=20)
    person_a = make_project(root / "a", heatmaps=False)
    set_params(person_a, **{"data.source": "folder", "data.path": str(images), "resize.size": [16, 16],
                            "train.epochs": 3, "train.batch_size": 16, "split.val": 0.25, "split.test": 0.25})
    # docs/team.md's commands: the S3 remote as the default, its endpoint (a company's S3-compatible
    # server; left out for AWS itself), and a shared folder as a second remote
    run(["dvc", "remote", "add", "-d", "storage", f"s3://{BUCKET}/imgclf"], person_a)
    run(["dvc", "remote", "modify", "storage", "endpointurl", s3], person_a)
    (root / "shared-folder").mkdir()
    run(["dvc", "remote", "add", "shared", str(root / "shared-folder")], person_a)
    run(["dvc", "repro"], person_a)
    run(["git", "add", "-A"], person_a)
    run(["git", "commit", "-qm", "first run"], person_a)
    run(["dvc", "push"], person_a)
    run(["dvc", "push", "-r", "shared"], person_a)
    run(["git", "tag", "-a", f"{ARTIFACT}@v1.0.0", "-m", "first model"], person_a)

    origin = root / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], root)
    run(["git", "remote", "add", "origin", str(origin)], person_a)
    branch = run(["git", "branch", "--show-current"], person_a).stdout.strip()
    run(["git", "push", "-q", "origin", branch, f"{ARTIFACT}@v1.0.0"], person_a)
    return {"root": root, "a": person_a, "origin": origin, "images": images}


def test_credentials_stay_out_of_git(team):
    committed = run(["git", "grep", "-I", "-l", ACCESS_KEY, "HEAD"], team["a"], check=False)
    assert committed.returncode == 1, f"the access key is committed in: {committed.stdout}"
    config = (team["a"] / ".dvc" / "config").read_text()
    assert "s3://team-bucket/imgclf" in config and "access_key" not in config
    # what `dvc remote modify --local` writes is ignored by git (dvc init's .dvc/.gitignore)
    run(["dvc", "remote", "modify", "--local", "storage", "profile", "a-profile"], team["a"])
    assert run(["git", "check-ignore", ".dvc/config.local"], team["a"]).returncode == 0
    run(["dvc", "remote", "modify", "--local", "--unset", "storage", "profile"], team["a"])


def test_second_persons_day_pull_gives_the_same_results_and_reruns_nothing(team):
    person_b = clone(team["origin"], team["root"] / "b")
    run(["dvc", "pull"], person_b)

    assert "Data and pipelines are up to date." in run(["dvc", "status"], person_b).stdout
    repro = run(["dvc", "repro"], person_b).stdout
    assert "Running stage" not in repro, repro
    assert digests(person_b) == digests(team["a"])

    image = next((team["images"] / "red").glob("*.png"))
    predicted = run(["imgclf", "predict", str(image)], person_b).stdout
    assert predicted.startswith(f"{image}: red "), predicted


def test_pull_from_a_shared_folder_remote(team):
    person_c = clone(team["origin"], team["root"] / "c")
    run(["dvc", "pull", "-r", "shared"], person_c)
    assert digests(person_c) == digests(team["a"])
    assert "can be read" in run(["imgclf", "check-remote", "-r", "shared"], person_c).stdout


def test_an_interrupted_pull_rerun_ends_in_the_same_state(team):
    """`dvc pull` killed in the middle of its downloads, then run again."""
    person_d = clone(team["origin"], team["root"] / "d")
    pulling = subprocess.Popen(["dvc", "pull", "-j", "1"], cwd=person_d, env=command_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while cached_objects(person_d) < 3 and pulling.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    pulling.kill()
    pulling.wait()
    assert pulling.returncode == -signal.SIGKILL, "the pull finished before the test could interrupt it"
    assert 0 < cached_objects(person_d) < cached_objects(team["a"])

    run(["dvc", "pull"], person_d)
    assert digests(person_d) == digests(team["a"])
    assert "Data and pipelines are up to date." in run(["dvc", "status"], person_d).stdout


def test_a_remote_that_cannot_be_reached_or_denies_access_is_named_with_what_to_check(team, tmp_path):
    person_e = clone(team["origin"], team["root"] / "e")
    assert "can be read; it holds" in run(["imgclf", "check-remote"], person_e).stdout

    # nothing listens on the endpoint (set for this machine only, as docs/team.md shows)
    run(["dvc", "remote", "modify", "--local", "storage", "endpointurl", f"http://127.0.0.1:{free_port()}"], person_e)
    unreachable = run(["imgclf", "check-remote"], person_e, check=False)
    assert unreachable.returncode == 1
    assert "remote 'storage' (s3://team-bucket/imgclf" in unreachable.stdout
    assert "cannot be reached" in unreachable.stdout and "endpointurl" in unreachable.stdout
    assert "Traceback" not in unreachable.stdout

    # a server that knows no key: every request is refused (moto checks credentials from request 0)
    locked, endpoint = start_s3_server(tmp_path / "locked.log", INITIAL_NO_AUTH_ACTION_COUNT="0")
    try:
        run(["dvc", "remote", "modify", "--local", "storage", "endpointurl", endpoint], person_e)
        pulled = run(["dvc", "pull"], person_e, check=False)
        assert pulled.returncode != 0 and "Forbidden" in pulled.stdout  # DVC's words, naming no remote
        denied = run(["imgclf", "check-remote"], person_e, check=False)
    finally:
        stop(locked)
    assert denied.returncode == 1 and "Traceback" not in denied.stdout
    assert "remote 'storage' (s3://team-bucket/imgclf" in denied.stdout and "denies access" in denied.stdout
    assert "$AWS_ACCESS_KEY_ID" in denied.stdout and ACCESS_KEY not in denied.stdout  # names, never values

    missing = run(["imgclf", "check-remote", "-r", "nowhere"], person_e, check=False)
    assert missing.returncode == 1
    assert "there is no remote 'nowhere'; the remotes are: shared, storage" in missing.stdout
    run(["dvc", "remote", "add", "gone", str(tmp_path / "unmounted")], person_e)
    gone = run(["imgclf", "check-remote", "-r", "gone"], person_e, check=False)
    assert gone.returncode == 1 and "does not exist here: mount the shared folder" in gone.stdout
