"""The package surface: a sorted, complete ``__all__``, typing marker, light imports."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import medserve_client
from medserve_client import exceptions


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then the rest.
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


def test_all_is_sorted() -> None:
    assert medserve_client.__all__ == sorted(medserve_client.__all__, key=_isort_key)


def test_all_lists_every_public_name_and_only_existing_ones() -> None:
    public = {
        name
        for name, value in vars(medserve_client).items()
        if (not name.startswith("_") and not inspect.ismodule(value))
        or name in ("contract", "exceptions")
    }
    assert set(medserve_client.__all__) - {"__version__"} == public
    for name in medserve_client.__all__:
        assert hasattr(medserve_client, name)


def test_exceptions_module_draws_the_tree_and_exports_every_error() -> None:
    assert "MedServeError" in (exceptions.__doc__ or "")
    assert "├── ServerOverloadedError" in (exceptions.__doc__ or "")
    for name in exceptions.__all__:
        if name.endswith("Error"):
            assert issubclass(getattr(exceptions, name), exceptions.MedServeError)


def test_package_is_typed() -> None:
    assert (Path(medserve_client.__file__).parent / "py.typed").is_file()


def test_importing_medserve_client_never_imports_tensorflow_or_medserve_or_pydicom() -> None:
    code = (
        "import sys, medserve_client, medserve_client.cli, medserve_client.contract;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'medserve', 'pydicom')];"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_importing_medserve_client_opens_no_connection_and_starts_no_thread() -> None:
    code = (
        "import threading, medserve_client;"
        "c = medserve_client.Client('127.0.0.1:1');"
        "print(threading.active_count())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "1"


def test_public_submodules_list_sorted_and_existing_names() -> None:
    import medserve_client.testing
    import medserve_client.transport

    for module in (medserve_client.contract, medserve_client.testing, medserve_client.transport):
        assert module.__all__ == sorted(module.__all__, key=_isort_key), module.__name__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
