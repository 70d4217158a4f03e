"""Which answer headers go back, and which names may be passed at all."""

from __future__ import annotations

from gateway.transcoding.passthrough import Passthrough, name_problems


def test_only_listed_printable_headers_are_returned() -> None:
    rules = Passthrough(returned=("x-a", "x-b", "x-c"))
    headers = {"x-a": "1", "x-b": "caf\u00e9", "x-c": "tab\there", "x-d": "4"}
    assert rules.returned_from(headers) == [("x-a", "1")]


def test_names_problems_each_say_why() -> None:
    problems = name_problems(
        "S", ["x-ok", "Upper", "grpc-x", "x-bin", "te", "x-request-id", "set-cookie"], ()
    )
    assert len(problems) == 6
    assert not name_problems("S", ["set-cookie"], ["set-cookie"])
