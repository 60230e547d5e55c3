"""The load-test runner and the side-by-side benchmark (run on a workstation, not in pods).

Layout::

    runner.py         ``loadtest/run``: one headless locust run, summary.json
    bench.py          ``make bench``: every variant in one run, interleaved over rounds
    cells.py          the cells of a round and one cell measured (Triton window, CPU)
    repo.py           the benchmark's model repository (batching off, float32, runtime, INT8)
    inprocess.py      the in-process limit of each runtime (TensorFlow, onnxruntime FP32/INT8)
    driver.py         the closed-loop driver of one cell
    targets.py        what each cell calls
    cpu.py            CPU time of the load generator, a server's process tree, the machine
    naive_peer.py     the naive peer: Flask and ``model.predict`` per request
    pytriton_peer.py  the PyTriton peer: the same model as a callable behind PyTriton
    ratios.py         every issue-13 target, judged, with its cause
    report.py         limit summary, table, JSON and plot
    readme_table.py   ``make bench-readme``: the tables into the READMEs
    latency.py        percentiles and throughput from raw samples
    sdk_speed.py      the SDK's classify_many against plain tritonclient loops

Needs ``medserve`` (to start the local Triton and export bench variants) and
everything ``medserve_locust`` needs.
"""
