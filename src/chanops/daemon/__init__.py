"""The daemon behind `chanops run`: a work queue of connection names, reconciled by workers.

- `service`    Daemon: start, stop, signals, supervision; builds the parts (start here)
- `_intake`    watcher batches, SIGHUP, git commits -> names to reconcile, resync requests
- `_resync`    the full resync: relist the platform once, enqueue every name
- `_queue`     the per-name work queue: serialisation, priorities, backoff, parking
- `_reconcile` one batch of names -> one partial reconcile (`only=batch`)
- `_outcomes`  backoff, reconcile events, metrics, platform health
- `_status`    /readyz, /status, the liveness gate
- `_index`     which names each manifest file defines
- `_cache`     the platform's last listing and a copy of the store's records
- `_parts`     what the concerns share
- `_loader`    incremental loads (a walk per resync, a changed file per edit)
- `_watcher`   watchfiles on the manifests root, filtered and coalesced, symlink swaps
- `_scheduler` APScheduler sync jobs, followed to completed / failed / stuck
- `_backoff`   per-connection retry schedule (pure)
- `http`       /healthz, /readyz, /metrics, /status under uvicorn in the same loop
- `_revision`  the manifests' git commit
"""

# The public modules; the others are this package's internals.
__all__ = ["auth", "http", "leader", "service", "ui"]
