"""`python -m fmesh_events` is the `fmesh-events` command."""

from fmesh_events.cli import main

main()
