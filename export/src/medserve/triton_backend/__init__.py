"""The Triton Python-backend model template that the exporter copies.

Usage::

    from importlib.resources import files

    template = files("medserve.triton_backend") / "model.py"
    shutil.copyfile(template, version_dir / "model.py")

``model.py`` is package data as much as code: Triton imports it inside its
Python-backend stub, where ``triton_python_backend_utils`` exists. Importing
this package does not import it.
"""
