"""Find the ``tritonserver`` to run, place its Python-backend stub, build its environment.

Usage::

    install = locate_tritonserver()              # the nvidia-pytriton wheel's server
    install = locate_tritonserver("/opt/tritonserver/bin/tritonserver")
    backend_dir = ensure_python_stub(install)    # copies the stub once, if needed
    env = server_environment(install)

The wheel ships ``tritonserver`` with the Python backend but keeps one stub per
Python version aside (``python_backend_stubs/3.X/``). The backend starts the
stub from its own directory (``backends/python/``), so the stub matching the
running Python is copied there: once, then only checked (size and sha256) at
each start. If site-packages is read only, a private backend directory is
built in the user cache instead (links to the backend library, a copy of the
stub) and passed with ``--backend-directory``.

The stub embeds CPython. It loads ``libpython3.X.so.1.0`` through the dynamic
linker, then, with no program name of its own, looks up ``python3`` on
``PATH`` and takes ``sys.prefix`` and site-packages from there (a venv's
``pyvenv.cfg`` included). So the environment puts the running interpreter's
directory first on ``PATH`` (TensorFlow and numpy come from its
site-packages), its ``libpython`` directory first on ``LD_LIBRARY_PATH`` (same
interpreter build as the caller), and the wheel's bundled libraries last.
PyTriton launches the same binary the same way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from medserve.errors import ServerError, UsageError
from medserve.repository import sha256_file

log = logging.getLogger(__name__)

TRITONSERVER_ENV = "TRITONSERVER"
STUB_FILENAME = "triton_python_backend_stub"
# What the Python backend needs next to its stub.
_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


@dataclass(frozen=True, kw_only=True)
class TritonInstall:
    """Where one ``tritonserver`` and its pieces live.

    Attributes:
        binary: The ``tritonserver`` executable.
        backend_dir: ``--backend-directory`` to pass, or None for the server's
            default (a native install in ``/opt/tritonserver``).
        cache_dir: ``--cache-directory`` to pass, or None for the default.
        lib_dirs: Shared-library directories the binary and stub need.
        python_stub: The shipped stub for the running Python (wheel only).
    """

    binary: Path
    backend_dir: Path | None = None
    cache_dir: Path | None = None
    lib_dirs: tuple[Path, ...] = ()
    python_stub: Path | None = None

    @property
    def is_wheel(self) -> bool:
        """Whether this is the nvidia-pytriton wheel's server (stub placed by us)."""
        return self.python_stub is not None


def python_version() -> str:
    """``"3.X"`` of the running interpreter, the stub version it needs."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _wheel_root() -> Path | None:
    spec = importlib.util.find_spec("pytriton")  # Locate only: importing pytriton is slow.
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate_tritonserver(explicit: str | os.PathLike[str] | None = None) -> TritonInstall:
    """Choose the server: ``explicit``, else ``$TRITONSERVER``, else the wheel's.

    Raises:
        UsageError: The given path is not an executable, or no server is
            installed (with the package to install).
    """
    chosen = explicit or os.environ.get(TRITONSERVER_ENV) or None
    root = _wheel_root()
    wheel_dir = root / "tritonserver" if root else None
    if chosen:
        binary = Path(chosen).expanduser()
        if binary.is_dir():
            binary = binary / "bin" / "tritonserver"
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise UsageError(
                f"tritonserver {chosen} is not an executable file: pass the path of the "
                f"tritonserver binary with --tritonserver or ${TRITONSERVER_ENV}"
            )
        binary = binary.resolve()
        if wheel_dir is None or binary != (wheel_dir / "bin" / "tritonserver").resolve():
            return _native_install(binary)
    if wheel_dir is None or not (wheel_dir / "bin" / "tritonserver").is_file():
        raise UsageError(
            "no tritonserver found: install the nvidia-pytriton wheel (pip install "
            f"nvidia-pytriton==0.7.0) or pass --tritonserver PATH / set ${TRITONSERVER_ENV}"
        )
    stub = wheel_dir / "python_backend_stubs" / python_version() / STUB_FILENAME
    if not stub.is_file():
        raise UsageError(
            f"the nvidia-pytriton wheel has no Python-backend stub for Python {python_version()}; "
            "run medserve with a Python it supports (3.8 to 3.13)"
        )
    return TritonInstall(
        binary=wheel_dir / "bin" / "tritonserver",
        backend_dir=wheel_dir / "backends",
        cache_dir=wheel_dir / "caches",
        lib_dirs=(wheel_dir.parent.parent / "nvidia_pytriton.libs",),
        python_stub=stub,
    )


def _native_install(binary: Path) -> TritonInstall:
    """A native install: backends next to the binary, as in /opt/tritonserver."""
    backends = binary.parent.parent / "backends"
    return TritonInstall(
        binary=binary,
        backend_dir=backends if backends.is_dir() else None,
        cache_dir=None,
        lib_dirs=(),
    )


def _same_file(a: Path, b: Path) -> bool:
    return b.is_file() and a.stat().st_size == b.stat().st_size and sha256_file(a) == sha256_file(b)


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy via a temporary name and rename, so a concurrent start never runs half a file."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        shutil.copyfile(source, partial)
        partial.chmod(0o755)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def ensure_python_stub(install: TritonInstall, *, cache_root: Path | None = None) -> Path | None:
    """Make the Python backend find the stub of the running Python.

    Args:
        install: From :func:`locate_tritonserver`.
        cache_root: Where to build a private backend directory if the wheel
            is read only (default: ``$XDG_CACHE_HOME/medserve`` or ``~/.cache/medserve``).

    Returns:
        The ``--backend-directory`` to pass (None: the server's default).

    Raises:
        ServerError: The stub can be placed neither in the wheel nor in the cache.
    """
    if install.python_stub is None or install.backend_dir is None:
        return install.backend_dir  # A native install brings its own stub.
    target = install.backend_dir / "python" / STUB_FILENAME
    if _same_file(install.python_stub, target):
        return install.backend_dir
    try:
        _copy_atomically(install.python_stub, target)
        log.info("placed the Python %s backend stub in %s", python_version(), target.parent)
        return install.backend_dir
    except OSError as exc:
        log.info("cannot write %s (%s); using a private backend directory", target, exc.strerror)
    return _private_backend_dir(install, cache_root)


def _private_backend_dir(install: TritonInstall, cache_root: Path | None) -> Path:
    assert install.python_stub is not None and install.backend_dir is not None
    root = _cache_root(cache_root)
    key = sha256_file(install.python_stub)[:12]
    backends = root / f"triton-backends-py{python_version()}-{key}"
    python_dir = backends / "python"
    try:
        python_dir.mkdir(parents=True, exist_ok=True)
        for name in _BACKEND_FILES:
            link = python_dir / name
            if not link.exists():
                link.symlink_to(install.backend_dir / "python" / name)
        stub = python_dir / STUB_FILENAME
        if not _same_file(install.python_stub, stub):
            _copy_atomically(install.python_stub, stub)
    except OSError as exc:
        raise ServerError(
            f"cannot place the Python-backend stub in {python_dir}: {exc.strerror}; "
            "make site-packages or $XDG_CACHE_HOME writable"
        ) from exc
    return backends


def _prepend(value: str | None, *entries: str) -> str:
    parts = [entry for entry in entries if entry]
    parts += [part for part in (value or "").split(os.pathsep) if part and part not in parts]
    return os.pathsep.join(parts)


def _cache_root(cache_root: Path | None = None) -> Path:
    if cache_root is not None:
        return cache_root
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "medserve"


def libpython_dir(cache_root: Path | None = None) -> Path | None:
    """A directory holding only a link to the running interpreter's ``libpython``.

    Putting the interpreter's own ``LIBDIR`` on ``LD_LIBRARY_PATH`` would
    also put every other library there (a conda env's older libstdc++, say)
    ahead of the system's for ``tritonserver``; a one-link directory cannot.
    Returns None for a static interpreter or if the cache is not writable
    (the stub then uses whichever ``libpython3.X`` the system has).
    """
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    soname = sysconfig.get_config_var("INSTSONAME") or ""
    library = Path(libdir) / soname
    if not soname or not library.is_file():
        return None
    key = hashlib.sha256(str(library.resolve()).encode()).hexdigest()[:12]
    directory = _cache_root(cache_root) / f"libpython-{python_version()}-{key}"
    link = directory / soname
    try:
        if link.resolve() != library.resolve() or not link.exists():
            directory.mkdir(parents=True, exist_ok=True)
            partial = directory / f".{soname}.{os.getpid()}.partial"
            partial.unlink(missing_ok=True)
            partial.symlink_to(library.resolve())
            os.replace(partial, link)
    except OSError as exc:
        log.debug("cannot link %s into %s: %s", library, directory, exc)
        return None
    return directory


def server_environment(
    install: TritonInstall, base: dict[str, str] | None = None, *, cache_root: Path | None = None
) -> dict[str, str]:
    """Environment for ``tritonserver`` and, through it, the backend stubs.

    Args:
        install: From :func:`locate_tritonserver`.
        base: Environment to start from (default: this process's).
        cache_root: Where the ``libpython`` link lives (default: the user cache).
    """
    env = dict(os.environ if base is None else base)
    env["PATH"] = _prepend(env.get("PATH"), str(Path(sys.executable).parent))
    if install.is_wheel:
        own_libpython = libpython_dir(cache_root)
        first = [str(own_libpython)] if own_libpython else []
        library_path = _prepend(env.get("LD_LIBRARY_PATH"), *first)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [part for part in [library_path, *map(str, install.lib_dirs)] if part]
        )
    # TensorFlow's C++ INFO lines (CPU features, oneDNN) only clutter the server log.
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    return env
