"""Session fixtures shared by every test folder.

Usage::

    def test_something(int8_export: Int8Export) -> None:
        assert (int8_export.repo / "medcnn" / "1" / "model_int8.onnx").is_file()

``int8_export`` trains and exports one small model with ``--int8`` per test
session (about a minute on two shared cores), for the unit tests of the INT8
export and verify and for the integration test that serves it.
"""

from __future__ import annotations

import pytest
from int8_model import Int8Export, train_and_export_int8


@pytest.fixture(scope="session")
def int8_export(tmp_path_factory: pytest.TempPathFactory) -> Int8Export:
    """A small trained model exported with ``medserve export --int8`` (version 1)."""
    return train_and_export_int8(tmp_path_factory.mktemp("int8"))
