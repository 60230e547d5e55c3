"""``medserve tune``: the local server's configuration chosen by measurement, within a budget.

Usage::

    medserve tune model_repository --budget-s 450      # or: make tune
    medserve serve model_repository --config-name tuned

What Triton's Model Analyzer does (it needs ``perf_analyzer``, whose wheels do
not run here), on the real local ``tritonserver``: :mod:`.space` (what may
change: runtime incl. INT8, max batch, preferred batch sizes, queue delay,
instances, intra/inter-op threads), :mod:`.search` (coordinate screening then
successive halving, median over rounds, a hard budget; pure logic),
:mod:`.session` (the private server whose config is switched through the
repository API, and the load), :mod:`.tuned` (the ``tuned`` config of every
model), :mod:`.report` (``tune.json``, ``tune.md``, ``tune.png``) and
:mod:`.cli`.

Why it lives here, in ``medserve-loadtest[bench]``, and not in ``medserve``
(export/): the measurements must come from the project's own load generator
(:mod:`medserve_bench.driver` and :mod:`medserve_bench.targets`, with the
image pool and answer validation of :mod:`medserve_locust`), and those ship in
this distribution, whose ``bench`` extra already depends on ``medserve`` for
the local launcher and the config protobufs. ``medserve`` may not import the
load tests (DESIGN, layout), so ``medserve tune`` reaches this package the
other way round: this distribution registers the subcommand in the
entry-point group ``medserve.commands``, which the ``medserve`` CLI reads.
Dependencies point one way only, loadtest -> medserve; a ``medserve`` installed
without ``medserve-loadtest[bench]`` simply has no ``tune`` subcommand.
"""
