"""Caller metadata: header injection refused, request ids kept or made, caller keys."""

from __future__ import annotations

import pytest

from gateway.call import CallerKeys, namespaced_idempotency_key, read_metadata, request_id_of
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
    assert len(digest) == 64
    assert digest != sha256(b"Bearer ggt_secret").hexdigest()  # salted (issue 12, item 14)
    assert "ggt_secret" not in digest
    assert credential_digest("Bearer ggt_secret") is digest  # cached, not recomputed


def test_caller_keys_ignore_the_schemes_case_and_extra_spaces() -> None:
    """Issue 12, item 3: `bearer`, `BEARER` and extra spaces each got a fresh bucket."""
    keys = CallerKeys(b"k" * 32)
    spellings = ["Bearer gk_1", "bearer gk_1", "BEARER gk_1", "  Bearer    gk_1 ", "bEaReR\tgk_1"]
    assert len({keys.key(spelling) for spelling in spellings}) == 1
    assert keys.key("Bearer gk_1") != keys.key("Bearer GK_1")  # tokens keep their case
    assert keys.key("Bearer gk_1") != keys.key("gk_1")


def test_callers_without_a_credential_are_told_apart_by_address_or_certificate() -> None:
    keys = CallerKeys(b"k" * 32)
    here = keys.key(None, lambda: (None, "ipv4:10.0.0.7:51234"))
    assert here == keys.key(None, lambda: (None, "ipv4:10.0.0.7:40000"))  # port ignored
    assert here != keys.key(None, lambda: (None, "ipv4:10.0.0.8:51234"))
    assert keys.key(None, lambda: (None, "ipv6:[::1]:5")) == keys.key(
        None, lambda: (None, "ipv6:[::1]:6")
    )
    certified = keys.key(None, lambda: ("x509:abc", "ipv4:10.0.0.7:1"))
    assert certified not in (here, "")
    assert keys.key(None) == ""  # nothing to tell: no caller bucket


def test_the_credential_decides_without_asking_the_connection() -> None:
    def connection() -> tuple[str | None, str | None]:
        raise AssertionError("asked")

    assert CallerKeys(b"k" * 32).key("Bearer a", connection)


def test_a_client_certificate_can_come_first() -> None:
    keys = CallerKeys(b"k" * 32, prefer="client-certificate")
    one = keys.key("Bearer a", lambda: ("x509:abc", "ipv4:1.2.3.4:5"))
    assert one == keys.key("Bearer b", lambda: ("x509:abc", "ipv4:1.2.3.4:6"))
    assert one != keys.key("Bearer a", lambda: ("x509:def", "ipv4:1.2.3.4:5"))
    assert keys.key("Bearer a", lambda: (None, "ipv4:1.2.3.4:5")) == CallerKeys(b"k" * 32).key(
        "Bearer a"
    )


def test_caller_keys_depend_on_the_salt() -> None:
    assert CallerKeys(b"a" * 32).key("Bearer x") != CallerKeys(b"b" * 32).key("Bearer x")
    with pytest.raises(ValueError, match="salt"):
        CallerKeys(b"short")


def test_idempotency_keys_are_namespaced_per_caller_and_stable() -> None:
    keys = CallerKeys(b"k" * 32)
    alice, bob = keys.key("Bearer alice"), keys.key("Bearer bob")
    assert namespaced_idempotency_key(alice, "k1") != namespaced_idempotency_key(bob, "k1")
    assert namespaced_idempotency_key(alice, "k1") == namespaced_idempotency_key(alice, "k1")
    assert "k1" not in namespaced_idempotency_key(alice, "k1")
