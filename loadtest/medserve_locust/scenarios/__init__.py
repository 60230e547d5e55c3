"""Locust scenarios: each file is one complete locustfile.

A new scenario is one more file here: ``loadtest/run --scenario NAME`` finds it
by its file name, and the load-test image carries the whole folder.
"""
