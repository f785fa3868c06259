#!/usr/bin/env python
"""Downloads COCO 2017 into DIR in the layout `data/` reads, resuming partial downloads and verifying checksums.

    python scripts/get_coco.py datasets/coco                      # train2017, val2017, annotations, test-dev info
    python scripts/get_coco.py datasets/coco --only val2017 annotations
    python scripts/get_coco.py datasets/coco --with-test-images   # also test2017/ (images of test-dev)

Archives go to DIR/downloads/ (`<name>.part` while incomplete; a rerun continues it), are checked against the
MD5 table below, unpacked into DIR (DIR/train2017/, DIR/val2017/, DIR/annotations/instances_*.json,
DIR/annotations/image_info_test-dev2017.json, DIR/test2017/) and the result is checked with
`scripts/check_dataset.py --quick`. `--base-url` replaces the official host (a mirror, or `file:///folder/` in
tests); `--checksums FILE` (md5sum format: `<md5>  <archive name>`) replaces the table's values.
Exit status: 0 done, 1 a download/checksum/unpack/check failure, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin, urlparse

OFFICIAL_BASE_URL = "http://images.cocodataset.org/"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """One official archive: path under the base URL, MD5, and the paths it must create in DIR."""

    path: str
    md5: str
    provides: tuple[str, ...]
    checked_splits: tuple[str, ...] = ()  # splits to run check_dataset on once images and annotations are there

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.path).name


# MD5s of the official archives. COCO does not publish checksums; these values agree across several independent
# public download scripts (see docs/data.md, "Downloading COCO", for which were cross-checked and how).
ARCHIVES: dict[str, Archive] = {
    "annotations": Archive("annotations/annotations_trainval2017.zip", "f4bbac642086de4f52a3fdda2de5fa2c",
                           ("annotations/instances_train2017.json", "annotations/instances_val2017.json")),
    "test-dev-info": Archive("annotations/image_info_test2017.zip", "85da7065e5e600ebfee8af1edb634eb5",
                             ("annotations/image_info_test-dev2017.json",)),
    "val2017": Archive("zips/val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80", ("val2017",), ("val2017",)),
    "train2017": Archive("zips/train2017.zip", "cced6f7f71b7629ddf16f17bbcfab6b2", ("train2017",), ("train2017",)),
    "test2017": Archive("zips/test2017.zip", "77ad2c53ac5d0aea611d422c0938fb35", ("test2017",)),
}
DEFAULT_PARTS = ("annotations", "test-dev-info", "val2017", "train2017")


class GetCocoError(RuntimeError):
    """A download, checksum, unpack or layout failure (one line, names the file)."""


def md5_of(path: Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _open(url: str, offset: int):
    """(stream, total size or None, whether the stream starts at `offset`) for http(s) or file URLs."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
        if not path.is_file():
            raise GetCocoError(f"{url}: not found")
        stream = open(path, "rb")
        stream.seek(offset)
        return stream, path.stat().st_size, True
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 (http/https/file only, checked by caller)
    resumed = offset > 0 and response.status == 206
    length = response.headers.get("Content-Length")
    total = (int(length) + (offset if resumed else 0)) if length is not None else None
    return response, total, resumed or offset == 0


def download(url: str, target: Path, show_progress: bool = True) -> int:
    """Downloads `url` to `target` through `target.part`, continuing an existing `.part`; returns bytes fetched."""
    part = target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    try:
        stream, total, resumed = _open(url, offset)
    except (urllib.error.URLError, OSError) as err:
        raise GetCocoError(f"cannot download {url}: {getattr(err, 'reason', err)}") from None
    if offset and not resumed:  # the server ignored the Range request: start over
        offset = 0
    if offset:
        print(f"resuming {target.name} at {offset / 2**20:.1f} MiB", file=sys.stderr)
    bar = None
    try:
        from tqdm import tqdm
    except ImportError:  # the script runs on a bare Python too
        show_progress = False
    if show_progress:
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=target.name, file=sys.stderr)
    fetched = 0
    try:
        with stream, open(part, "ab" if offset else "wb") as out:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                out.write(chunk)
                fetched += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as err:
        raise GetCocoError(f"download of {url} interrupted after {(offset + fetched) / 2**20:.1f} MiB "
                           f"({getattr(err, 'reason', err)}); rerun to resume") from None
    finally:
        if bar is not None:
            bar.close()
    if total is not None and part.stat().st_size != total:
        raise GetCocoError(f"{part}: got {part.stat().st_size} of {total} bytes; rerun to resume")
    part.replace(target)
    return fetched


def unpack(archive: Path, root: Path) -> None:
    """Extracts `archive` into `root`, refusing members that would land outside it."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if member.startswith("/") or ".." in PurePosixPath(member).parts:
                    raise GetCocoError(f"{archive}: unsafe member path {member!r}")
            zf.extractall(root)
    except zipfile.BadZipFile as err:
        raise GetCocoError(f"{archive}: not a valid zip file ({err})") from None


def read_checksums(path: Path) -> dict[str, str]:
    """`<md5>  <file name>` lines (md5sum output) -> {file name: md5}."""
    table = {}
    for line in path.read_text().splitlines():
        if line.strip():
            md5, name = line.split(maxsplit=1)
            table[PurePosixPath(name.strip().lstrip("*")).name] = md5.lower()
    return table


def fetch(name: str, archive: Archive, root: Path, base_url: str, expected_md5: str, keep: bool,
          show_progress: bool = True) -> None:
    """Download (or reuse) + verify + unpack one archive; a marker file makes a rerun skip finished archives."""
    marker = root / "downloads" / f"{archive.file_name}.unpacked"
    if marker.is_file() and marker.read_text().strip() == expected_md5 and all(
            (root / p).exists() for p in archive.provides):
        print(f"{name}: already in place")
        return
    target = root / "downloads" / archive.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file():
        download(urljoin(base_url, archive.path), target, show_progress)
    actual = md5_of(target)
    if actual != expected_md5:
        bad = target.with_name(target.name + ".bad")
        target.replace(bad)
        raise GetCocoError(f"{name}: checksum mismatch for {archive.file_name} (md5 {actual}, expected "
                           f"{expected_md5}); moved to {bad}, rerun to download it again")
    print(f"{name}: md5 ok, unpacking into {root}")
    unpack(target, root)
    missing = [p for p in archive.provides if not (root / p).exists()]
    if missing:
        raise GetCocoError(f"{name}: {archive.file_name} did not create {', '.join(missing)} in {root}")
    marker.write_text(expected_md5 + "\n")
    if not keep:
        target.unlink()


def check_layout(root: Path, splits: list[str]) -> int:
    """Runs scripts/check_dataset.py --quick on the splits whose images and annotations are both present."""
    ready = [s for s in splits if (root / s).is_dir() and (root / "annotations" / f"instances_{s}.json").is_file()]
    if not ready:
        return 0
    cmd = [sys.executable, str(Path(__file__).with_name("check_dataset.py")), "--root", str(root), "--quick"]
    for split in ready:
        cmd += ["--split", split]
    return subprocess.call(cmd)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, metavar="DIR", help="dataset root to create (e.g. datasets/coco)")
    p.add_argument("--only", nargs="+", choices=list(ARCHIVES), metavar="PART",
                   help=f"archives to fetch, from {list(ARCHIVES)} (default: {' '.join(DEFAULT_PARTS)})")
    p.add_argument("--with-test-images", action="store_true", help="also fetch test2017/ (6.2 GB, test-dev images)")
    p.add_argument("--base-url", default=OFFICIAL_BASE_URL,
                   help=f"where the archives are (default {OFFICIAL_BASE_URL}; file:///dir/ for a local copy)")
    p.add_argument("--checksums", type=Path, help="md5sum-format file overriding the built-in MD5 table")
    p.add_argument("--keep-archives", action="store_true", help="keep the zip files after unpacking")
    p.add_argument("--no-check", action="store_true", help="skip check_dataset.py at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if urlparse(args.base_url).scheme not in ("http", "https", "file"):
        p.error(f"--base-url must be an http(s):// or file:// URL, got {args.base_url!r}")
    if not args.base_url.endswith("/"):
        args.base_url += "/"
    if args.checksums is not None and not args.checksums.is_file():
        p.error(f"--checksums: {args.checksums} not found")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = list(args.only or DEFAULT_PARTS) + (["test2017"] if args.with_test_images else [])
    overrides = read_checksums(args.checksums) if args.checksums else {}
    args.root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.root).free
    print(f"fetching {', '.join(parts)} into {args.root} ({free / 2**30:.0f} GiB free) from {args.base_url}")
    splits = []
    try:
        for name in dict.fromkeys(parts):
            archive = ARCHIVES[name]
            fetch(name, archive, args.root, args.base_url, overrides.get(archive.file_name, archive.md5),
                  args.keep_archives, not args.no_progress)
            splits += archive.checked_splits
    except GetCocoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.no_check:
        return 0
    return 1 if check_layout(args.root, splits) else 0


if __name__ == "__main__":
    sys.exit(main())
