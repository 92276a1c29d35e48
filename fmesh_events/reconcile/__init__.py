"""reconcile: Key_Shared consumers of resource-events and pod-events that materialize each
CR into StatefulSets, Services, child CRs and status (DESIGN.md, "reconcile")."""
