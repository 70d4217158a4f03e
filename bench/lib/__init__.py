"""The benchmark's helpers: tools, upstreams, load generators and the servers under test.

The drivers in bench/ import them as ``lib.<module>`` (``python bench/<driver>.py`` puts
bench/ first on ``sys.path``); naive_passthrough.py, rest_load.py and sse_upstream.py are
also programs, started by path as subprocesses.
"""
