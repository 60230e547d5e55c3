"""The served contract: what a medserve model repository promises its callers.

Usage::

    from medserve_client import contract

    contract.INPUT_NAME, contract.OUTPUT_NAME        # "image", "probabilities"
    contract.encoded_model("medcnn")                 # "medcnn_encoded"
    info = contract.model_info_from(metadata, config, labels=None, version=None)

    window = contract.StatsWindow.open(stats_client, "medcnn")
    ...                                              # send 16 requests
    counted = window.close(requests=16)              # waits until Triton counted them
    counted.inferences_per_execution

One place for the facts every caller shares: tensor names and model-name
suffixes (what ``medserve export`` writes), parsing of Triton's model metadata
and config (:mod:`.metadata`), and windows over Triton's statistics API
(:mod:`.statistics`), and the exit statuses of every medserve command with
the one rule that picks them (``ExitStatus``, ``run_command``). The client,
the exporter, the demo, the load tests and the test suite import them from
here; none of them keeps a copy. Light: numpy
only, no tritonclient import, no TensorFlow.
"""

from medserve_client._exit_status import ExitStatus, exit_status_of, run_command
from medserve_client.contract.metadata import (
    EncodedEntry,
    ImageTarget,
    encoded_entry_from,
    has_labels,
    image_target_from,
    model_info_from,
    parse_labels,
)
from medserve_client.contract.names import (
    ADMIN_KEY_HEADER,
    CLASS_INDEX_NAME,
    ENCODED_INPUT_NAME,
    ENCODED_SUFFIX,
    EXPLAIN_SUFFIX,
    GRPC_RESTRICTED_PREFIX,
    HEATMAP_NAME,
    INPUT_NAME,
    MAX_PIXELS_PARAMETER,
    OUTPUT_NAME,
    PREDICTED_CLASS,
    PREPROCESS_SUFFIX,
    encoded_model,
    explain_model,
    preprocess_model,
)
from medserve_client.contract.statistics import (
    ModelCounters,
    ServerWindow,
    StatsWindow,
    diff,
    parse_statistics,
    settled_snapshot,
    snapshot,
    window,
)

__all__ = [
    "ADMIN_KEY_HEADER",
    "CLASS_INDEX_NAME",
    "ENCODED_INPUT_NAME",
    "ENCODED_SUFFIX",
    "EXPLAIN_SUFFIX",
    "GRPC_RESTRICTED_PREFIX",
    "HEATMAP_NAME",
    "INPUT_NAME",
    "MAX_PIXELS_PARAMETER",
    "OUTPUT_NAME",
    "PREDICTED_CLASS",
    "PREPROCESS_SUFFIX",
    "EncodedEntry",
    "ExitStatus",
    "ImageTarget",
    "ModelCounters",
    "ServerWindow",
    "StatsWindow",
    "diff",
    "encoded_entry_from",
    "encoded_model",
    "exit_status_of",
    "explain_model",
    "has_labels",
    "image_target_from",
    "model_info_from",
    "parse_labels",
    "parse_statistics",
    "preprocess_model",
    "run_command",
    "settled_snapshot",
    "snapshot",
    "window",
]
