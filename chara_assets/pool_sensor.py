"""The sensor that frees the pool slots of runs that died (see ``chara_resources/pools.py``)."""

import dagster as dg

from chara_resources.pools import free_dead_runs_slots


@dg.sensor(
    name="pool_slots",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=(
        "Frees the Dagster pool slots (brainbox, avatar) of runs that died: runs that ended or "
        "no longer exist, and runs still shown as running whose process on this machine is "
        "gone (killed, or the machine restarted; those are marked as failed first). Without it "
        "a killed run's slot would make every later step of its pool wait for ever."
    ),
)
def pool_slots(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    freed = free_dead_runs_slots(context.instance, log=context.log.warning)
    if not freed:
        return dg.SkipReason("no dead run holds a pool slot")
    return dg.SkipReason("; ".join(run.message() for run in freed))
