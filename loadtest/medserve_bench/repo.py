"""The benchmark's model repository: the exported one plus two variants of the classifier.

Usage::

    models = write_bench_repo(Path("model_repository"), Path("work/bench/repo"),
                              model="medcnn", keras_model=Path("work/model/model.keras"))
    models.batching, models.no_batching, models.float32   # Triton model names

One server serves them all, so every variant is measured in the same run:

- ``<model>``: the export as it is (dynamic batching on);
- ``<model>_nobatch``: the same files with the ``dynamic_batching`` block
  removed from every config (edited as a parsed ``ModelConfig`` message, never
  as text): each request executes alone;
- ``<model>_fp32``: the same network behind a float32 input (``FP32
  [-1, H, W, 3]`` holding pixels already scaled to [0, 1], what a client that
  normalises before sending transmits). Its SavedModel is exported for the
  benchmark from the same Keras model, calling it directly instead of casting
  uint8 first; the config's input type says FP32 and everything else (batching,
  instances, warm-up, backend code) is the export's. It measures what a
  four-times-larger payload costs end to end, with the same compute;
- ``<model>_<runtime>``: the export under the local runtime its
  ``configs/local.pbtxt`` does not name (``tensorflow`` or ``onnxruntime``,
  the config parameter ``runtime``), when the export has ``model.onnx``, so
  both runtimes are served in the same run;
- ``<model>_int8``: the export served through its ``configs/local-int8.pbtxt``
  (onnxruntime on ``model_int8.onnx``, written by ``medserve export --int8``)
  whatever config the server serves the others with, when the export has
  both, so INT8 and FP32 are served in the same run.

Files are hard-linked where the file system allows (the SavedModels are tens of
megabytes); the source repository is never modified.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from medserve.model_config import ONNX_FILE_PARAMETER, RUNTIME_PARAMETER
from medserve_client import contract

log = logging.getLogger(__name__)

SAVEDMODEL_DIRNAME = "model.savedmodel"
NOBATCH_SUFFIX = "_nobatch"
FP32_SUFFIX = "_fp32"
INT8_SUFFIX = "_int8"
INT8_CONFIG = "local-int8"  # Shared name: the INT8 variant of the local config.
INT8_ONNX_FILENAME = "model_int8.onnx"


@dataclass(frozen=True)
class BenchModels:
    """Triton model names of the variants in a bench repository."""

    batching: str
    no_batching: str
    float32: str | None
    encoded: str | None
    other_runtime: str | None = None
    int8: str | None = None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # Another file system, or links not allowed.
        shutil.copy2(src, dst)


def copy_tree(src: Path, dst: Path) -> None:
    """Copy ``src`` to the new directory ``dst``, hard-linking files where possible."""
    shutil.copytree(src, dst, copy_function=_link_or_copy, dirs_exist_ok=False)


def _config_files(model_dir: Path) -> list[Path]:
    return [
        p for p in [model_dir / "config.pbtxt", *model_dir.glob("configs/*.pbtxt")] if p.is_file()
    ]


def edit_configs(model_dir: Path, edit: Callable[[model_config_pb2.ModelConfig], None]) -> None:
    """Parse every config of ``model_dir`` as a ``ModelConfig``, apply ``edit``, write it back.

    The file is replaced, not rewritten in place: it may be a hard link to the
    source repository's copy.
    """
    for path in _config_files(model_dir):
        config = model_config_pb2.ModelConfig()
        text_format.Parse(path.read_text(encoding="utf-8"), config)
        edit(config)
        path.unlink()
        path.write_text(text_format.MessageToString(config), encoding="utf-8")


def _renamed(name: str) -> Callable[[model_config_pb2.ModelConfig], None]:
    def edit(config: model_config_pb2.ModelConfig) -> None:
        config.name = name

    return edit


def without_batching(name: str) -> Callable[[model_config_pb2.ModelConfig], None]:
    """An edit that renames the model and removes its dynamic batcher."""

    def edit(config: model_config_pb2.ModelConfig) -> None:
        config.name = name
        config.ClearField("dynamic_batching")

    return edit


def as_float32(name: str) -> Callable[[model_config_pb2.ModelConfig], None]:
    """An edit that renames the model and declares its image input (and warm-up) FP32.

    The float32 artifact is a SavedModel written for the benchmark, so the
    copy runs TensorFlow whatever runtime (onnxruntime, INT8) the served
    config names: no ONNX file of the export takes float32 pixels.
    """

    def edit(config: model_config_pb2.ModelConfig) -> None:
        config.name = name
        if config.backend == "python":
            config.parameters[RUNTIME_PARAMETER].string_value = "tensorflow"
            if ONNX_FILE_PARAMETER in config.parameters:
                del config.parameters[ONNX_FILE_PARAMETER]
        for tensor in config.input:
            if tensor.data_type == model_config_pb2.TYPE_UINT8:
                tensor.data_type = model_config_pb2.TYPE_FP32
        for warmup in config.model_warmup:
            for data in warmup.inputs.values():
                if data.data_type == model_config_pb2.TYPE_UINT8:
                    data.data_type = model_config_pb2.TYPE_FP32

    return edit


def with_runtime(name: str, runtime: str) -> Callable[[model_config_pb2.ModelConfig], None]:
    """An edit that renames the model and sets its Python-backend ``runtime`` parameter."""

    def edit(config: model_config_pb2.ModelConfig) -> None:
        config.name = name
        if config.backend == "python":
            config.parameters["runtime"].string_value = runtime

    return edit


def _other_runtime(model_dir: Path, config_name: str = "local") -> str | None:
    """The local runtime ``config_name`` does not use, if the newest version has ``model.onnx``."""
    versions = sorted(_version_dirs(model_dir), key=lambda p: int(p.name))
    local = model_dir / "configs" / f"{config_name}.pbtxt"
    if not versions or not (versions[-1] / "model.onnx").is_file() or not local.is_file():
        return None
    config = model_config_pb2.ModelConfig()
    text_format.Parse(local.read_text(encoding="utf-8"), config)
    used = config.parameters["runtime"].string_value or "tensorflow"
    return "tensorflow" if used == "onnxruntime" else "onnxruntime"


def serve_config_as(model_dir: Path, config_name: str, served_name: str) -> None:
    """Make ``configs/<config_name>.pbtxt`` the one the server reads (``<served_name>.pbtxt``).

    The bench server starts every model with one ``--model-config-name``
    (``local``, or ``tuned``); serving another config of the same model in the
    same server means a copy of the model whose served config is that one. The
    copy's other configs are left as they are (rename them with :func:`edit_configs`).

    Raises:
        FileNotFoundError: The model has no such config.
    """
    chosen = model_dir / "configs" / f"{config_name}.pbtxt"
    if not chosen.is_file():
        raise FileNotFoundError(f"{model_dir.name} has no configs/{config_name}.pbtxt")
    served = model_dir / "configs" / f"{served_name}.pbtxt"
    text = chosen.read_text(encoding="utf-8")
    served.unlink(missing_ok=True)  # It may be a hard link to the source repository's file.
    served.write_text(text, encoding="utf-8")


def _has_int8(model_dir: Path) -> bool:
    versions = sorted(_version_dirs(model_dir), key=lambda p: int(p.name))
    return (
        bool(versions)
        and (versions[-1] / INT8_ONNX_FILENAME).is_file()
        and (model_dir / "configs" / f"{INT8_CONFIG}.pbtxt").is_file()
    )


def _version_dirs(model_dir: Path) -> list[Path]:
    return [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]


def write_float32_savedmodel(
    keras_model: Path, path: Path, input_name: str, output_name: str
) -> None:
    """Export ``keras_model`` with a float32 ``serving_default`` (pixels in [0, 1])."""
    import contextlib
    import io

    import keras
    import tensorflow as tf

    model = keras.models.load_model(keras_model, compile=False)
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {output_name: tf.identity(model(image, training=False), name=output_name)}

    shape = (None, *model.inputs[0].shape[1:])
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec(shape=shape, dtype=tf.float32, name=input_name)],
    )
    with contextlib.redirect_stdout(io.StringIO()):
        archive.write_out(str(path), verbose=False)


def _io_names(model_dir: Path) -> tuple[str, str]:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(_config_files(model_dir)[0].read_text(encoding="utf-8"), config)
    return config.input[0].name, config.output[0].name


def write_bench_repo(
    source: Path,
    dest: Path,
    *,
    model: str = "medcnn",
    keras_model: Path | None = None,
    config_name: str = "local",
) -> BenchModels:
    """Write the bench repository ``dest`` from the exported repository ``source``.

    Args:
        source: A repository written by ``medserve export``.
        dest: Where to write (replaced if it exists).
        model: The classifier's model name in ``source``.
        keras_model: The Keras model the classifier was exported from; without
            it the float32 variant is left out.
        config_name: The config the bench server serves (``local``, or
            ``tuned`` after ``medserve tune``): the other runtime is the one
            it does not name.

    Raises:
        FileNotFoundError: ``source`` has no model ``model``.
    """
    if not (source / model).is_dir():
        raise FileNotFoundError(f"{source} has no model {model!r}: run medserve export first")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for entry in sorted(source.iterdir()):
        if entry.is_dir() and _config_files(entry):
            copy_tree(entry, dest / entry.name)
            edit_configs(dest / entry.name, _renamed(entry.name))  # Unlinks: never edits source.

    no_batching = model + NOBATCH_SUFFIX
    copy_tree(dest / model, dest / no_batching)
    edit_configs(dest / no_batching, without_batching(no_batching))

    float32 = None
    if keras_model is not None:
        float32 = model + FP32_SUFFIX
        copy_tree(dest / model, dest / float32)
        input_name, output_name = _io_names(dest / float32)
        edit_configs(dest / float32, as_float32(float32))
        for version in _version_dirs(dest / float32):
            shutil.rmtree(version / SAVEDMODEL_DIRNAME)
            write_float32_savedmodel(
                keras_model, version / SAVEDMODEL_DIRNAME, input_name, output_name
            )
    other_runtime = None
    runtime = _other_runtime(dest / model, config_name)
    if runtime is not None:
        other_runtime = f"{model}_{runtime}"
        copy_tree(dest / model, dest / other_runtime)
        edit_configs(dest / other_runtime, with_runtime(other_runtime, runtime))
    int8 = None
    if _has_int8(dest / model):
        int8 = model + INT8_SUFFIX
        copy_tree(dest / model, dest / int8)
        serve_config_as(dest / int8, INT8_CONFIG, config_name)
        edit_configs(dest / int8, _renamed(int8))
    encoded = contract.encoded_model(model)
    log.info("bench repository %s: %s", dest, sorted(p.name for p in dest.iterdir()))
    return BenchModels(
        batching=model,
        no_batching=no_batching,
        float32=float32,
        encoded=encoded if (dest / encoded).is_dir() else None,
        other_runtime=other_runtime,
        int8=int8,
    )
