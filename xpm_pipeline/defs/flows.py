"""Which sync mode a run uses: the flow of its job decides, so no launch path can run the wrong flow.

Each sync job carries its flow in the ``xpm/flow`` job tag. A run launched without a mode (GraphQL with
no run config, the CLI, ``execute_in_process``) runs its job's flow; a mode given in run config must be
one the job allows, else the run stops before any XPM call with one line naming both. Runs outside the
sync jobs (asset materializations from the graph) carry no flow: their mode is the config's, or nightly.
"""

from __future__ import annotations

from xpm_pipeline.sync.context import HOURLY, INITIAL, NIGHTLY, RESYNC

FLOW_MODES: dict[str, tuple[str, ...]] = {
    "initial": (INITIAL,),
    "hourly": (HOURLY,),
    "nightly": (NIGHTLY,),
    "full_sync": (NIGHTLY, RESYNC),  # 'full sync', or 're-sync all' when run config asks for resync
}
"""The modes each flow allows; the first is its mode when run config names none."""

DEFAULT_MODE = NIGHTLY


class FlowMismatch(ValueError):
    """Run config asks a job for a mode its flow does not run."""


def run_mode(configured: str | None, flow: str | None, job_name: str) -> str:
    """The mode of a run of ``job_name`` (whose flow is ``flow``), given its run config's mode, if any."""
    allowed = FLOW_MODES.get(flow or "")
    if allowed is None:
        return configured or DEFAULT_MODE
    if configured is None:
        return allowed[0]
    if configured not in allowed:
        raise FlowMismatch(
            f"{job_name} runs the {flow} flow: run config mode {configured!r} contradicts it "
            f"(leave mode out, or use {' or '.join(repr(m) for m in allowed)})"
        )
    return configured
