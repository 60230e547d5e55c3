"""`medserve export` of an unchanged model writes nothing; `--force` needs `--version`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_export import TINY_MAX_BATCH, ExportedRepo

from medserve.cli import main
from medserve.export_inputs import CARD_KEY
from medserve.repository import existing_versions, file_checksums


def _export_argv(exported_repo: ExportedRepo, repo: Path, *extra: str) -> list[str]:
    # The fixture's own export command (tests/unit/conftest.py), plus extra flags.
    model = str(exported_repo.model_path)
    return ["export", model, "--repo", str(repo), "--max-batch-size", str(TINY_MAX_BATCH), *extra]


def test_exporting_the_same_model_and_options_again_writes_nothing_and_says_so(
    exported_repo: ExportedRepo, repo_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = file_checksums(repo_copy)
    assert main(_export_argv(exported_repo, repo_copy)) == 0
    out = capsys.readouterr().out
    last = out.splitlines()[-1]
    assert last.startswith("unchanged: medcnn version 1 in ") and "nothing written" in last
    # It verified the version it kept (one line per check, as an export does).
    assert any("TF1 session loader" in line for line in out.splitlines())
    assert file_checksums(repo_copy) == before
    assert existing_versions(repo_copy / "medcnn") == [1]


def test_the_card_records_the_source_models_sha256_and_the_options(
    exported_repo: ExportedRepo,
) -> None:
    from medserve.repository import sha256_file

    card = json.loads((exported_repo.repo / "medcnn" / "1" / "model_card.json").read_text())
    record = card[CARD_KEY]
    assert record["model_sha256"] == sha256_file(exported_repo.model_path)
    assert set(record["side_files"]) == {"training.json"}
    assert record["options"]["formats"] == "savedmodel,onnx"
    assert record["options"]["max_batch_size"] == TINY_MAX_BATCH
    assert len(record["fingerprint"]) == 64


def test_an_export_with_other_options_is_a_new_version_then_unchanged_itself(
    exported_repo: ExportedRepo, repo_copy: Path
) -> None:
    # --formats savedmodel: the cheapest real export with another option.
    argv = _export_argv(exported_repo, repo_copy, "--formats", "savedmodel")
    assert main(argv) == 0
    assert existing_versions(repo_copy / "medcnn") == [1, 2]
    assert main(argv) == 0
    assert existing_versions(repo_copy / "medcnn") == [1, 2]


@pytest.mark.parametrize(
    "change",
    [("--max-pixels", "1000000"), ("--labels", "a,b,c"), ("--tensorrt-fp16",), ("model",)],
    ids=["max-pixels", "labels", "tensorrt-fp16", "model-file"],
)
def test_another_option_label_or_model_file_does_not_match_the_exported_version(
    exported_repo: ExportedRepo, tmp_path: Path, change: tuple[str, ...]
) -> None:
    from medserve.cli import build_parser
    from medserve.cli.export import export_inputs_of
    from medserve.export_inputs import unchanged_version

    model_path = exported_repo.model_path
    if change == ("model",):
        from tiny_export import build_tiny_model

        shutil.copy(model_path.parent / "training.json", tmp_path)
        model_path = tmp_path / "model.keras"
        build_tiny_model(seed=7).save(model_path)
        change = ()
    argv = _export_argv(exported_repo, exported_repo.repo)
    labels = ("normal", "nodule", "effusion")
    same = export_inputs_of(build_parser()[0].parse_args(argv), labels)
    assert unchanged_version(exported_repo.repo / "medcnn", same) == 1
    argv[1] = str(model_path)
    args = build_parser()[0].parse_args([*argv, *change])
    changed_labels = tuple(args.labels.split(",")) if args.labels else labels
    other = export_inputs_of(args, changed_labels)
    if model_path == exported_repo.model_path:
        assert other["model_sha256"] == same["model_sha256"]
    assert unchanged_version(exported_repo.repo / "medcnn", other) is None


def test_force_without_version_is_a_user_error_with_a_hint(
    exported_repo: ExportedRepo, repo_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = file_checksums(repo_copy)
    assert main([*_export_argv(exported_repo, repo_copy), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medserve export: error: --force replaces the version given")
    assert "add --version N" in err and err.count("\n") == 1
    assert file_checksums(repo_copy) == before


def test_make_export_after_the_demos_export_of_the_same_model_writes_nothing(
    exported_repo: ExportedRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from types import SimpleNamespace

    from medserve.demo import export_model_once

    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.keras", "training.json"):
        shutil.copy(exported_repo.model_path.parent / name, folder)
    record = json.loads((folder / "training.json").read_text())
    repo = tmp_path / "model_repository"
    trained = SimpleNamespace(record=record, model_path=folder / "model.keras")
    assert export_model_once(trained, repo) == 1
    # What `make export` runs (Makefile: medserve export MODEL --repo REPO --name MODEL).
    argv = ["export", str(folder / "model.keras"), "--repo", str(repo), "--name", "medcnn"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("unchanged: medcnn version 1")
    assert existing_versions(repo / "medcnn") == [1]
