"""Where `Daemon` used to live, whole: it is now split by concern (daemon/service.py is
the entry point). Kept only because tests/security/test_hostile_platform.py reaches the
daemon through this name (it patches `runner.Daemon._succeeded` and imports
`LivenessGate`); nothing in src/ imports it.
"""

from __future__ import annotations

from chanops.daemon.service import EXIT_CRASHED, Daemon, DaemonOptions
from chanops.daemon.status import LivenessGate

__all__ = ["EXIT_CRASHED", "Daemon", "DaemonOptions", "LivenessGate"]
