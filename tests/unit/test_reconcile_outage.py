"""Which failures mean "the API server is away" (waited out) rather than "this object failed"
(retried, then dead-lettered): fmesh_events/reconcile/loop.py api_unavailable."""

from __future__ import annotations

import pytest
import urllib3
from kubernetes import client
from kubernetes.dynamic.exceptions import NotFoundError, ServiceUnavailableError

from fmesh_events.reconcile.loop import api_unavailable


def _api(status: int) -> client.ApiException:
    return client.ApiException(status=status, reason="x")


@pytest.mark.parametrize("failure", [
    urllib3.exceptions.MaxRetryError(None, "/apis", reason=ConnectionRefusedError()),  # type: ignore[arg-type]
    urllib3.exceptions.ReadTimeoutError(None, "/apis", "read timed out"),  # type: ignore[arg-type]
    urllib3.exceptions.ProtocolError("connection reset"),
    ConnectionRefusedError(111, "Connection refused"),
    _api(503), _api(429), _api(504), _api(502),
    ServiceUnavailableError(_api(503)),
])
def test_the_api_server_being_away_is_waited_out(failure: BaseException) -> None:
    assert api_unavailable(failure)


@pytest.mark.parametrize("failure", [
    _api(422), _api(409), _api(403), _api(404), _api(500), _api(400),
    NotFoundError(_api(404)),
    TimeoutError("StatefulSet still exists after 30s"),
    ValueError("a bug"),
])
def test_a_failure_of_the_object_is_not(failure: BaseException) -> None:
    assert not api_unavailable(failure)
