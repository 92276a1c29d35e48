"""watch: turns the Kubernetes list/watch streams of CRs and Pods into messages on
resource-events and pod-events (DESIGN.md, "watch")."""
