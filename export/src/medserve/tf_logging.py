"""Keep TensorFlow's start-up chatter out of what a user reads (the CLI, the demo).

Usage::

    quiet_tensorflow()   # before the first `import tensorflow`

TensorFlow's C++ runtime logs CPU-feature notes and, when the verifier feeds
a deliberately corrupt image to the decoder, the op error it then expects.
The report lines are what a user reads; verbose logging on the ``medserve``
logger (the CLI's ``-v``) keeps everything.
"""

from __future__ import annotations

import logging
import os


def quiet_tensorflow() -> None:
    """Raise TensorFlow's log thresholds unless the user set them or asked for -v."""
    if logging.getLogger("medserve").getEffectiveLevel() <= logging.DEBUG:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.WARNING)
