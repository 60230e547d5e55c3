"""medserve-client: call a medserve image classifier served by NVIDIA Triton.

Usage::

    from medserve_client import Client

    with Client("127.0.0.1:8001") as client:        # gRPC; "http://127.0.0.1:8000" for HTTP
        prediction = client.classify("chest.png", top_k=2)[0]
        print(prediction.label, prediction.score, prediction.top_k)
        explanation = client.explain("chest.png")[0]  # Grad-CAM; supportive only
        explanation.overlay.save("chest-overlay.png")

Everything the model takes (input name, shape, dtype, labels, batch limit,
version) is read from the server's metadata and config, never hard-coded.
The served contract (tensor names, model-name suffixes, metadata parsing,
statistics windows) is :mod:`medserve_client.contract`. Importing this
package is cheap: no TensorFlow, no connection, no pydicom until a DICOM
input shows up.
"""

from medserve_client import contract, exceptions
from medserve_client._async_client import AsyncClient
from medserve_client._client import Client
from medserve_client._errors import (
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    MedServeError,
    ModelNotReadyError,
    PermissionDeniedError,
    RequestTooLargeError,
    ServerOverloadedError,
    ServerUnavailableError,
    TLSError,
)
from medserve_client._models import (
    TLS,
    DicomSource,
    Explanation,
    ModelInfo,
    Prediction,
    Retry,
    Timeout,
    Window,
)

__version__ = "0.1.0"

__all__ = [
    "TLS",
    "AsyncClient",
    "Client",
    "DicomSource",
    "Explanation",
    "InferenceError",
    "InferenceTimeoutError",
    "InvalidInputError",
    "MedServeError",
    "ModelInfo",
    "ModelNotReadyError",
    "PermissionDeniedError",
    "Prediction",
    "RequestTooLargeError",
    "Retry",
    "ServerOverloadedError",
    "ServerUnavailableError",
    "TLSError",
    "Timeout",
    "Window",
    "__version__",
    "contract",
    "exceptions",
]
