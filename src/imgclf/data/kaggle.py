"""Kaggle competitions and datasets through the official ``kaggle`` package.

Nothing here reads, logs or prints a credential: the package finds them itself (an access token
in ``KAGGLE_API_TOKEN`` or ``~/.kaggle/access_token``, or a legacy ``~/.kaggle/kaggle.json`` /
``KAGGLE_USERNAME`` + ``KAGGLE_KEY``), and our errors only name where they go.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from imgclf.plumbing.errors import PipelineError

logger = logging.getLogger(__name__)

CREDENTIALS_HELP = (
    "Kaggle needs your API credentials to download {what}. Create a token at "
    "https://www.kaggle.com/settings/api, then either set KAGGLE_API_TOKEN to it (or save it as "
    "~/.kaggle/access_token), or put the legacy key file at ~/.kaggle/kaggle.json (or set KAGGLE_USERNAME "
    "and KAGGLE_KEY). Without credentials: download the archive in a browser and set data.archive to "
    "its path (dvc exp run -S data.archive=~/Downloads/{archive})."
)


class KaggleError(PipelineError):
    """Kaggle refused or failed the download; the message says what to do."""


def download(folder: Path, competition: str | None = None, dataset: str | None = None) -> Path:
    """Download a competition's files or a dataset as one zip into ``folder``; return its path."""
    what = f"the competition {competition}" if competition else f"the dataset {dataset}"
    slug = competition or (dataset or "").split("/")[-1]
    api = _authenticated_api(what, slug)
    folder.mkdir(parents=True, exist_ok=True)
    import requests

    logger.info("downloading %s from Kaggle into %s", what, folder)
    try:
        if competition:
            api.competition_download_files(competition, path=str(folder), quiet=False)
        else:
            api.dataset_download_files(dataset, path=str(folder), unzip=False, quiet=False)
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else None
        raise KaggleError(http_advice(status, competition, dataset)) from None
    except requests.RequestException as error:
        raise KaggleError(f"cannot reach Kaggle to download {what} ({type(error).__name__}); check the "
                          f"network, or download it in a browser and set data.archive.") from None
    archive = folder / f"{slug}.zip"
    if not archive.is_file():
        raise KaggleError(f"Kaggle's download of {what} did not produce {archive}.")
    return archive


def _authenticated_api(what: str, slug: str):  # noqa: ANN202 (the kaggle package's own type)
    # Importing the package already tries to authenticate. Without credentials it prints its own long
    # help and calls exit(1); our message replaces it.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except ImportError:
        raise KaggleError("the kaggle package is missing: run `make setup` (it is in requirements.txt).") from None
    except SystemExit:
        raise KaggleError(CREDENTIALS_HELP.format(what=what, archive=f"{slug}.zip")) from None
    return api


def http_advice(status: int | None, competition: str | None, dataset: str | None) -> str:
    """What an HTTP status from Kaggle means for the user, and what to do."""
    if competition:
        page = f"https://www.kaggle.com/competitions/{competition}"
        what = f"the competition {competition}"
    else:
        page = f"https://www.kaggle.com/datasets/{dataset}"
        what = f"the dataset {dataset}"
    if status == 401:
        return (f"Kaggle answered 401 Unauthorized for {what}: your API token is stale or revoked. Create a new "
                "one at https://www.kaggle.com/settings/api and replace the old one.")
    if status == 403:
        return (f"Kaggle answered 403 Forbidden for {what}: accept the competition's rules first, on its page "
                f"{page}/rules (while logged in), then run again.")
    if status == 404:
        return f"Kaggle has no {what} (404): check the name on {page}."
    return (f"Kaggle answered HTTP {status} for {what}; try again later, or download it from {page} "
            "and set data.archive.")
