"""Where chara keeps its data: the storage root and the Dagster instance folder.

``CHARA_HOME`` (default ``.chara`` in the project folder) holds assets, work caches and, unless
``DAGSTER_HOME`` is set, the Dagster instance (``<CHARA_HOME>/dagster``), so partitions and run
history persist between ``dagster dev`` sessions.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DAGSTER_YAML = """\
# Written by chara on first start; edit freely (chara never overwrites it).
telemetry:
  enabled: false
concurrency:
  pools:
    # Assets that send work to a BrainBox declare its pool (CHARA_BRAINBOX_POOL, default
    # "brainbox"): one such step at a time per server, whatever the number of runs. Raise it
    # for a server that can take more: dagster instance concurrency set brainbox 2
    default_limit: 1
run_monitoring:
  # With the daemon running (chara dev), a run that has ended frees the pool slots it still
  # holds after this many seconds: a run worker killed mid-step (kill -9, out of memory) frees
  # nothing itself, and its slot would block the pool for ever. Runs killed without anyone
  # noticing (chara run, a power cut) are found by the pool_slots sensor and by the next run
  # (docs/reliability.md).
  enabled: true
  free_slots_after_run_end_seconds: 30
  poll_interval_seconds: 15
"""


def chara_home() -> Path:
    """The storage root: ``$CHARA_HOME`` or ``<project>/.chara``."""
    value = os.environ.get("CHARA_HOME")
    return Path(value).expanduser().resolve() if value else PROJECT_ROOT / ".chara"


def ensure_dagster_home() -> Path:
    """Set ``DAGSTER_HOME`` (default ``<CHARA_HOME>/dagster``) and give it a ``dagster.yaml``."""
    value = os.environ.get("DAGSTER_HOME")
    home = Path(value).expanduser().resolve() if value else chara_home() / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def brainbox_pool() -> str:
    """The Dagster pool of the configured BrainBox (one pool per server)."""
    return os.environ.get("CHARA_BRAINBOX_POOL", "brainbox")
