"""The Triton Python-backend model template that the exporter copies.

Usage::

    from importlib.resources import files

    template = files("medserve.triton_backend") / "model.py"
    shutil.copyfile(template, version_dir / "model.py")

``model.py`` is package data as much as code: Triton imports it inside its
Python-backend stub, where ``triton_python_backend_utils`` exists. Importing
this package does not import it. It binds that module to
:class:`medserve.triton_backend.serving.ServedModel`, so the stub runs the
installed package's modules: ``serving`` (execute, batching, per-request
errors), ``runtimes`` (TensorFlow or onnxruntime), ``threads`` (thread pools),
``served_config`` (what the config declares) and ``errors``.
``decode_pillow.py`` stays one self-contained file: it also runs in NVIDIA's
image (the ONNX deployments), where medserve is not installed.
"""
