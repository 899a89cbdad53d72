"""Container topology: bridge networks on one host, only the edge publishes 80/443, no escape hatches.

These promises are about the Docker deployment. Against a target that runs as
local processes or is only reachable over the network they are NOT_APPLICABLE,
with the reason (the platform's, ``harness/platform``). The topology is observed
once per run (``conftest.py``) and judged by each check.
"""
