"""Files of a Triton model repository: versions, atomic writes, checksums.

Usage::

    repo = prepare_repository(Path("model_repository"))
    version = choose_version([repo / "medcnn", repo / "medcnn_preprocess"], None, force=False)
    with staged_directory(repo / "medcnn") as tmp:
        (tmp / "model.py").write_text(...)
        commit_directories([(tmp, repo / "medcnn" / str(version))], force=False)
    write_text_atomic(repo / "medcnn" / "config.pbtxt", text)

A version is built in a hidden ``.tmp-*`` directory inside the model directory
(same file system, so the final ``os.rename`` is atomic) and renamed into
place only when complete. Triton ignores such directories: it logs "ignore
version directory '.tmp-...' which fails to convert to integral number" and
loads only numeric ones, so an interrupted export leaves nothing it would load.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from medserve.errors import UsageError

log = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"
_CHUNK = 1 << 20


def prepare_repository(repo: Path) -> Path:
    """Create the repository directory if needed and check that it is one.

    Raises:
        UsageError: ``repo`` exists and is a file, or cannot be created.
    """
    if repo.exists() and not repo.is_dir():
        raise UsageError(f"repository path {repo} is a file; pass a directory with --repo")
    try:
        repo.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create repository directory {repo}: {exc.strerror}") from exc
    return repo


def existing_versions(model_dir: Path) -> list[int]:
    """The numeric version directories of ``model_dir``, sorted (empty if none)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(child.name)
        for child in model_dir.iterdir()
        if child.is_dir() and child.name.isdigit() and int(child.name) > 0
    )


def choose_version(model_dirs: Iterable[Path], requested: int | None, *, force: bool) -> int:
    """Pick the version number to write into every one of ``model_dirs``.

    Models exported together (the classifier and its decoder) share a version
    number, so the default is one past the highest version in any of them.

    Raises:
        UsageError: ``requested`` is not positive, or exists and ``force`` is off.
    """
    dirs = list(model_dirs)
    if requested is None:
        return max((v for d in dirs for v in existing_versions(d)), default=0) + 1
    if requested < 1:
        raise UsageError(f"--version must be a positive integer, got {requested}")
    taken = [d / str(requested) for d in dirs if (d / str(requested)).exists()]
    if taken and not force:
        raise UsageError(
            f"version {requested} already exists at {taken[0]}; pass --force to replace it "
            "or omit --version to write the next free version"
        )
    return requested


@contextlib.contextmanager
def staged_directory(parent: Path) -> Iterator[Path]:
    """Yield a fresh hidden directory in ``parent``; remove it unless it was committed.

    Anything the block raises propagates after the staging directory is gone,
    so a failed export leaves no partial version behind.
    """
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent))
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def commit_directories(moves: Sequence[tuple[Path, Path]], *, force: bool) -> None:
    """Rename complete staging directories to their targets: all of them or none.

    With ``force`` an existing target is first renamed aside (into a hidden
    directory Triton ignores) and deleted only once every rename succeeded.
    If a rename fails, the ones already done are undone (new directories go
    back to their staging names, old ones back into place) and the error
    propagates, so the classifier never appears without its decoder.

    Args:
        moves: ``(staging, target)`` pairs, committed in order.
        force: Replace targets that exist.

    Raises:
        UsageError: A target exists and ``force`` is off (nothing is renamed).
    """
    for _, target in moves:
        if target.exists() and not force:
            raise UsageError(f"{target} already exists; pass --force to replace it")
    done: list[tuple[Path, Path, Path | None]] = []
    try:
        for staging, target in moves:
            old = None
            if target.exists():
                old = target.with_name(f"{TMP_PREFIX}old-{target.name}-{uuid.uuid4().hex[:8]}")
                os.rename(target, old)
            try:
                os.rename(staging, target)
            except BaseException:
                if old is not None:
                    os.rename(old, target)
                raise
            done.append((staging, target, old))
    except BaseException:
        for staging, target, old in reversed(done):
            os.rename(target, staging)  # The staging context then deletes it.
            if old is not None:
                os.rename(old, target)
        raise
    for _, target, old in done:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        log.debug("committed %s", target)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file and ``os.replace``.

    A reader (Triton polling the repository, another export) sees either the
    old file or the new one, never half of one.
    """
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksums(root: Path, *, exclude: Iterable[str] = ()) -> dict[str, str]:
    """sha256 of every file under ``root`` by POSIX relative path, sorted.

    Args:
        root: A version directory.
        exclude: Relative paths to leave out (the model card, which holds the sums).
    """
    skip = set(exclude)
    sums: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative not in skip and "__pycache__" not in path.parts:
            sums[relative] = sha256_file(path)
    return sums
