"""medserve: a Keras medical-image classifier, exported and served on Triton.

Usage::

    from medserve.model import build_reference_cnn
    from medserve.spec import ModelSpec

    spec = ModelSpec(name="medcnn", labels=("normal", "lesion"))
    model = build_reference_cnn(spec.input_shape, num_classes=len(spec.labels))

Importing this package is cheap: TensorFlow is imported only by the modules
that need it, when they are used.
"""

__version__ = "0.1.0"
