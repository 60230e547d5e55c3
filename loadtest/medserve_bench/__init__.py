"""The load-test runner and the side-by-side benchmark (run on a workstation, not in pods).

Layout::

    runner.py      ``loadtest/run``: one headless locust run, summary.json
    bench.py       ``make bench``: every variant in one run, interleaved over rounds
    repo.py        the benchmark's model repository (batching off, float32 input)
    inprocess.py   the in-process limit (the SavedModel called directly)
    driver.py      the closed-loop driver of one cell
    targets.py     what each cell calls
    naive_peer.py  the naive peer: Flask and ``model.predict`` per request
    report.py      table, JSON and plot
    latency.py     percentiles and throughput from raw samples
    sdk_speed.py   the SDK's classify_many against plain tritonclient loops

Needs ``medserve`` (to start the local Triton and export bench variants) and
everything ``medserve_locust`` needs.
"""
