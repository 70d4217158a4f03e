"""Caller metadata: header injection refused, request ids kept or made."""

from __future__ import annotations

import pytest

from gateway.call import read_metadata, request_id_of
from gateway.errors import InvalidRequest


@pytest.mark.parametrize("key", ["authorization", "x-request-id", "idempotency-key", "x-anything"])
@pytest.mark.parametrize("bad", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b"])
def test_line_breaks_refused_without_echo(key: str, bad: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        read_metadata([(key, bad)])
    assert caught.value.violations[0].field == f"metadata.{key}"
    assert "Injected" not in str(caught.value)


def test_values_read() -> None:
    caller = read_metadata(
        [("authorization", "Bearer t"), ("x-request-id", "r-1"), ("idempotency-key", "k1")]
    )
    assert (caller.authorization, caller.request_id, caller.idempotency_key) == (
        "Bearer t",
        "r-1",
        "k1",
    )


def test_request_id_generated() -> None:
    first, second = read_metadata([]).request_id, read_metadata(None).request_id
    assert len(first) == 32
    assert first != second


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "ünï"])
def test_odd_request_ids_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        read_metadata([("x-request-id", bad)])
    assert request_id_of([("x-request-id", bad)]) != bad


def test_binary_metadata_ignored() -> None:
    assert read_metadata([("trace-bin", b"\r\n")]).authorization is None


def test_a_forked_process_makes_different_request_ids() -> None:
    import os

    from gateway.call import new_request_id

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send one id and leave at once
        try:
            os.write(write, new_request_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child != new_request_id()


def test_a_credential_is_kept_only_as_its_digest() -> None:
    from hashlib import sha256

    from gateway.call import credential_digest

    digest = credential_digest("Bearer ggt_secret")
    assert digest == sha256(b"Bearer ggt_secret").hexdigest()
    assert "ggt_secret" not in digest
    assert credential_digest("Bearer ggt_secret") is digest  # cached, not recomputed
