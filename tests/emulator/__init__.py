"""Tests of the REST emulator (gateway/emulator), against real servers on port 0."""
