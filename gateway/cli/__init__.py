"""The command line: ``serve`` (the loop, signals, workers), ``emulator`` and ``demo``."""
