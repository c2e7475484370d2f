"""``imgclf check-remote``: can this checkout reach its DVC remote, and if not, what to check.

``dvc pull`` and ``dvc push`` report a failed remote by the object they could not move ("failed to
connect to s3 (bucket/path/files/md5) - Forbidden"), after minutes of retries when the endpoint is
unreachable. This check asks the remote once, through DVC's own configuration and filesystem (so
``.dvc/config.local``, the AWS variables and profiles count exactly as they do for ``dvc pull``),
and answers in seconds with the remote's name, its URL and what to look at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.plumbing.errors import PipelineError

AWS_CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE")


@dataclass(frozen=True)
class RemoteStatus:
    """A remote that answered: its name, where it points and how many objects it holds."""

    name: str
    url: str
    objects: int

    def describe(self) -> str:
        if self.objects == 0:
            return (f"remote '{self.name}' ({self.url}) can be read; it holds nothing yet: "
                    "`dvc push` sends this checkout's data and models there")
        return f"remote '{self.name}' ({self.url}) can be read; it holds {self.objects} objects"


def remote_settings(config: Any, name: str | None) -> tuple[str, dict[str, str]]:
    """The name and the section of remote ``name``, or of the default remote, in a DVC repository's
    merged config (repo, .dvc/config.local, user)."""
    remotes = config.get("remote", {})
    chosen = name or config.get("core", {}).get("remote")
    if not remotes:
        raise PipelineError("this project has no DVC remote: add one with `dvc remote add -d storage "
                            "s3://BUCKET/PATH` (or a shared folder), see docs/team.md")
    if chosen is None:
        raise PipelineError(f"no default remote (remotes: {', '.join(sorted(remotes))}): pass one with "
                            "--remote NAME, or set it with `dvc remote default NAME`")
    if chosen not in remotes:
        raise PipelineError(f"there is no remote '{chosen}'; the remotes are: {', '.join(sorted(remotes))}")
    return chosen, remotes[chosen]


def describe_credentials(settings: dict[str, str]) -> str:
    """Where an S3 remote's credentials would come from, by name only (never a value)."""
    sources = [f"`{key}` in .dvc/config(.local)" for key in ("access_key_id", "profile", "credentialpath")
               if key in settings]
    sources += [f"${variable}" for variable in AWS_CREDENTIAL_VARIABLES if os.environ.get(variable)]
    if Path("~/.aws/credentials").expanduser().exists():
        sources.append("~/.aws/credentials")
    return ", ".join(sources) if sources else "none found"


def check_remote(repo_root: Path, name: str | None = None) -> RemoteStatus:
    """Ask the remote for its object folder; raise a PipelineError that names the remote and what to
    check when it cannot be reached, denies access or does not exist."""
    from dvc.repo import Repo

    with Repo(str(repo_root)) as repo:
        chosen, settings = remote_settings(repo.config, name)
        url = settings["url"]
        endpoint = settings.get("endpointurl")
        where = f"remote '{chosen}' ({url}{f' at {endpoint}' if endpoint else ''})"
        try:
            remote = repo.cloud.get_remote(chosen)
        except Exception as error:  # noqa: BLE001 (DVC names a missing plugin or a bad URL in its own words)
            raise PipelineError(f"{where} cannot be opened: {error}") from error
        is_s3 = remote.fs.protocol in ("s3", "s3a")
        is_local = remote.fs.protocol == "local"
        try:
            exists = remote.fs.exists(remote.path)
            objects = sum(1 for _ in remote.fs.find(remote.path)) if exists else 0
        except PermissionError as error:
            raise PipelineError(_denied(where, url, chosen, settings, is_s3, error)) from error
        except FileNotFoundError as error:  # S3: the bucket does not exist
            raise PipelineError(f"{where}: {error or 'not found'}. Check the bucket name in the URL "
                                f"(`dvc remote modify {chosen} url s3://BUCKET/PATH`), and that it exists "
                                "in the account and region of your credentials") from error
        except OSError as error:
            raise PipelineError(_unreachable(where, chosen, is_s3, error)) from error
        except Exception as error:  # noqa: BLE001 (botocore's connection errors are not OSErrors)
            kind = type(error).__name__.lower()
            if "credentials" in kind:  # botocore's NoCredentialsError, PartialCredentialsError
                raise PipelineError(_denied(where, url, chosen, settings, is_s3, error)) from error
            if any(word in kind for word in ("connect", "endpoint", "timeout")):
                raise PipelineError(_unreachable(where, chosen, is_s3, error)) from error
            raise PipelineError(f"{where} answered with an error: {type(error).__name__}: {error}") from error
    if is_local and not exists:
        raise PipelineError(f"{where} does not exist here: mount the shared folder, or create it "
                            f"(`mkdir -p {remote.path}`) before the first `dvc push`")
    if is_local and not os.access(remote.path, os.W_OK):
        raise PipelineError(f"{where} can be read but not written: `dvc pull` will work, `dvc push` will not; "
                            "check the folder's owner and mode")
    return RemoteStatus(chosen, url, objects)


def _unreachable(where: str, name: str, is_s3: bool, error: BaseException) -> str:
    if is_s3:
        return (f"{where} cannot be reached: {error}. Check the endpoint (`dvc remote modify --local {name} "
                "endpointurl URL` for this machine only; unset, DVC uses AWS S3 itself), that the server "
                "runs, and that your network or VPN reaches it")
    return f"{where} cannot be reached: {error}. Check that the folder or host is mounted and reachable"


def _denied(where: str, url: str, name: str, settings: dict[str, str], is_s3: bool,
            error: BaseException) -> str:
    if not is_s3:
        return f"{where} denies access: {error}. Check the folder's owner and mode"
    return (f"{where} denies access: {error}. Check the credentials DVC uses (found: "
            f"{describe_credentials(settings)}): $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY, $AWS_PROFILE, "
            f"or `dvc remote modify --local {name} profile NAME`; and that they may read {url} "
            "(dvc pull) and write it (dvc push)")
