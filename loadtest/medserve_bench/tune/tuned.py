"""Writing the winner as the named config ``tuned`` for every model of the repository.

Usage::

    paths = write_tuned(Path("model_repository"), "medcnn", best)
    # medcnn/configs/tuned.pbtxt, medcnn_preprocess/configs/tuned.pbtxt, ...
    medserve serve model_repository --config-name tuned

``--model-config-name=tuned`` applies to every model Triton loads, and a model
without ``configs/tuned.pbtxt`` falls back to its ``config.pbtxt`` (the GPU
deployment, which the local server cannot run). So:

- the classifier gets the candidate applied to its ``configs/local.pbtxt``;
- every other model with a ``configs/local.pbtxt`` gets a copy of it, and the
  Grad-CAM model (``<name>_explain``) also takes the classifier's batching,
  queue and instances, as the exporter writes every config name;
- the ensemble has one ``config.pbtxt`` for every deployment; it gets a
  ``tuned`` config only when its max batch size would exceed the tuned
  classifier's (Triton refuses such an ensemble), with the smaller value.

Every file is a ``ModelConfig`` message edited and printed with
``text_format`` (never a string template) and written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from medserve.model_config import parse_config, to_text
from medserve.repository import write_text_atomic
from medserve.triton_backend.threads import INTER_OP_PARAMETER, INTRA_OP_PARAMETER
from medserve_bench.tune.space import Candidate
from medserve_client import contract

log = logging.getLogger(__name__)

TUNED_CONFIG_NAME = "tuned"
LOCAL_CONFIG_NAME = "local"
ENSEMBLE_PLATFORM = "ensemble"


def named_config(model_dir: Path, name: str) -> Path:
    """``<model_dir>/configs/<name>.pbtxt``."""
    return model_dir / "configs" / f"{name}.pbtxt"


def tuned_classifier_config(repo: Path, model: str, candidate: Candidate) -> mc.ModelConfig:
    """The classifier's local config with ``candidate`` applied."""
    return candidate.apply(parse_config(named_config(repo / model, LOCAL_CONFIG_NAME)))


def _follow_classifier(config: mc.ModelConfig, classifier: mc.ModelConfig) -> None:
    """Give the explain model the classifier's batching, queue, instances and threads."""
    config.max_batch_size = classifier.max_batch_size
    config.dynamic_batching.CopyFrom(classifier.dynamic_batching)
    del config.instance_group[:]
    config.instance_group.extend(classifier.instance_group)
    for key in (INTRA_OP_PARAMETER, INTER_OP_PARAMETER):
        if key in classifier.parameters:
            config.parameters[key].CopyFrom(classifier.parameters[key])
        elif key in config.parameters:
            del config.parameters[key]


def companion_configs(
    repo: Path, model: str, classifier: mc.ModelConfig
) -> dict[Path, mc.ModelConfig]:
    """The ``tuned`` configs the other models of ``repo`` need beside the classifier's."""
    configs: dict[Path, mc.ModelConfig] = {}
    for model_dir in sorted(p for p in repo.iterdir() if p.is_dir() and p.name != model):
        local = named_config(model_dir, LOCAL_CONFIG_NAME)
        if local.is_file():
            config = parse_config(local)
            if model_dir.name == contract.explain_model(model):
                _follow_classifier(config, classifier)
            configs[named_config(model_dir, TUNED_CONFIG_NAME)] = config
            continue
        default = model_dir / "config.pbtxt"
        if not default.is_file():
            continue
        config = parse_config(default)
        steps = {step.model_name for step in config.ensemble_scheduling.step}
        too_big = config.max_batch_size > classifier.max_batch_size
        if config.platform == ENSEMBLE_PLATFORM and model in steps and too_big:
            config.max_batch_size = classifier.max_batch_size
            configs[named_config(model_dir, TUNED_CONFIG_NAME)] = config
    return configs


def write_tuned(repo: Path, model: str, candidate: Candidate) -> list[Path]:
    """Write ``configs/tuned.pbtxt`` for the classifier and the models that need one.

    Returns:
        The files written, the classifier's first.
    """
    classifier = tuned_classifier_config(repo, model, candidate)
    files = {named_config(repo / model, TUNED_CONFIG_NAME): classifier}
    files.update(companion_configs(repo, model, classifier))
    for path, config in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, to_text(config))
        log.info("wrote %s", path)
    return list(files)
