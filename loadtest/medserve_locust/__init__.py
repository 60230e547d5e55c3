"""What ships to the locust pods: scenarios, shapes and the helpers they share.

Layout::

    scenarios/   one locustfile per scenario (``locust -f scenarios/classify_grpc.py``)
    shapes/      optional ``LoadTestShape`` files, added after a scenario
    options.py   the command-line options, declared once (locust and the runner)
    users.py     what every scenario's users share: hooks, target, pool, validator
    pool.py      the images sent, loaded once per process
    validate.py  every answer judged
    samples.py   every request's latency, for exact percentiles
    thresholds.py  pass/fail limits turned into locust's exit code

Needs ``locust``, ``tritonclient``, ``numpy``, ``pillow`` and ``medserve_client``
(the served contract: tensor names, suffixes and metadata parsing come from
``medserve_client.contract``), never TensorFlow or ``medserve``.
"""
