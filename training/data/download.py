"""Fetching the public datasets, for machines that have internet access.

    python -m training.data.download ml-1m --dest data/raw

MovieLens zips come from GroupLens and are unpacked to `<dest>/<name>/`. The Yelp Open
Dataset needs its terms accepted in a browser first, so for `yelp` this only says where
to get it and where to put it. Nothing here runs in the tests against the real servers;
the data licences forbid redistributing the files, so none are committed.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

BASE_URL = "https://files.grouplens.org/datasets/movielens"
# Name -> a file the unpacked folder must contain (how a finished download is recognised).
MOVIELENS = {
    "ml-100k": "u.data",
    "ml-1m": "ratings.dat",
    "ml-latest-small": "ratings.csv",
    "ml-25m": "ratings.csv",
    "ml-32m": "ratings.csv",
}
YELP = "yelp"
YELP_URL = "https://business.yelp.com/data/resources/open-dataset/"
DATASETS = (*MOVIELENS, YELP)
_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download or unpack failed; the message says what to do instead."""


def yelp_instructions(dest_dir: str | Path) -> str:
    target = Path(dest_dir) / YELP
    return (
        "The Yelp Open Dataset cannot be downloaded automatically: its terms must be "
        f"accepted first at {YELP_URL}\n"
        "Download the JSON archive there, unpack it, and put these two files in "
        f"{target}/:\n"
        "  yelp_academic_dataset_business.json  (or business.json)\n"
        "  yelp_academic_dataset_review.json    (or review.json)\n"
        f"Then load it with training.data.yelp.load_yelp_dataset('{target}')."
    )


def _download(url: str, target: Path, *, timeout: float, progress: bool) -> None:
    """`url` to `target` through `target.part`, so an interrupted run leaves no half zip."""
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, part.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            written = 0
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            if total is not None and written != total:
                raise http.client.IncompleteRead(b"", total - written)
    except (OSError, http.client.HTTPException) as error:
        # URLError and HTTPError are OSErrors too; a dropped connection is an IncompleteRead.
        part.unlink(missing_ok=True)
        if isinstance(error, urllib.error.HTTPError):
            reason: object = f"HTTP {error.code} {error.reason}"
        else:
            reason = getattr(error, "reason", None) or repr(error)
        raise DownloadError(
            f"could not download {url}: {reason}. Check the network connection, or download "
            f"the file in a browser and unzip it into {target.parent}/"
        ) from error
    part.replace(target)


def _unzip(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            root = dest.resolve()
            for member in zf.namelist():
                # A member outside dest ("../x", "/etc/x") would be a zip-slip write.
                if not (root / member).resolve().is_relative_to(root):
                    raise DownloadError(f"{archive.name}: unsafe path {member!r} in the zip")
            zf.extractall(dest)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{archive} is not a valid zip file ({error})") from error


def fetch(
    name: str,
    dest_dir: str | Path,
    *,
    base_url: str = BASE_URL,
    timeout: float = 60.0,
    progress: bool = True,
    force: bool = False,
    keep_zip: bool = False,
) -> Path:
    """Download and unpack one dataset; returns its folder (`<dest_dir>/<name>`).

    A folder that already holds the dataset is left alone unless `force`. For `yelp` this
    prints the manual steps and returns the folder the files belong in.
    """
    dest = Path(dest_dir)
    folder = dest / name
    if name == YELP:
        print(yelp_instructions(dest))
        return folder
    if name not in MOVIELENS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if (folder / MOVIELENS[name]).is_file() and not force:
        return folder
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"{name}.zip"
    _download(f"{base_url.rstrip('/')}/{name}.zip", archive, timeout=timeout, progress=progress)
    if force and folder.exists():
        shutil.rmtree(folder)
    _unzip(archive, dest)
    if not keep_zip:
        archive.unlink()
    if not (folder / MOVIELENS[name]).is_file():
        raise DownloadError(f"{archive.name} did not contain {name}/{MOVIELENS[name]}")
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.data.download", description="Fetch public datasets."
    )
    parser.add_argument(
        "names", nargs="+", choices=DATASETS, metavar="NAME", help=", ".join(DATASETS)
    )
    parser.add_argument("--dest", default="data/raw", help="parent folder (default data/raw)")
    parser.add_argument("--base-url", default=BASE_URL, help="a MovieLens mirror")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per network read")
    parser.add_argument("--force", action="store_true", help="download again even if present")
    parser.add_argument("--keep-zip", action="store_true", help="keep the downloaded zip")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in args.names:
        try:
            folder = fetch(
                name,
                args.dest,
                base_url=args.base_url,
                timeout=args.timeout,
                progress=not args.quiet,
                force=args.force,
                keep_zip=args.keep_zip,
            )
        except DownloadError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        if name != YELP:
            print(f"{name}: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
