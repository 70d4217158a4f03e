"""Where things are in the repository, for tests that read or run its files."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST_PROTOS = REPO / "tests" / "protos"
