from __future__ import annotations

from fmesh_events import models
from fmesh_events.reconcile import cleanup
from tests.examples import example


def _function(**spec: object) -> models.Function:
    body = example("function.yaml", "Function")
    body["spec"].update(spec)
    return models.Function.model_validate(body)


def test_default_subscription_is_the_fully_qualified_name() -> None:
    fn = _function(tenant="acme", namespace="ingest", cleanupSubscription=True,
                   input={"topics": ["persistent://acme/ingest/a", "persistent://acme/ingest/b"]})
    assert cleanup.wants_cleanup(fn)
    name = fn.spec.name or fn.metadata["name"]
    assert cleanup.subscriptions(fn) == [("persistent://acme/ingest/a", f"acme/ingest/{name}"),
                                         ("persistent://acme/ingest/b", f"acme/ingest/{name}")]


def test_explicit_subscription_and_schema_sources() -> None:
    fn = _function(subscriptionName="mine", input={
        "customSchemaSources": {"persistent://p/q/s": "AVRO"}, "topics": ["persistent://p/q/t"]})
    assert cleanup.subscriptions(fn) == [("persistent://p/q/s", "mine"),
                                         ("persistent://p/q/t", "mine")]
    assert not cleanup.wants_cleanup(fn)


def test_admin_path_encodes_the_subscription() -> None:
    assert cleanup.subscription_path("persistent://t/n/in", "t/n/f") == \
        "/admin/v2/persistent/t/n/in/subscription/t%2Fn%2Ff?force=true"
    assert cleanup.subscription_path("in", "s").startswith("/admin/v2/persistent/public/default/in/")
