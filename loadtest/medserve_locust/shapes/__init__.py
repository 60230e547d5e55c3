"""Load shapes: each file is one ``LoadTestShape``, given to locust after a scenario."""
