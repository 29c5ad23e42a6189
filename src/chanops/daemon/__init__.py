"""The daemon behind `chanops run`: a work queue of connection names, reconciled by workers.

- `service`    Daemon: start, stop, signals, supervision; builds the parts (start here)
- `intake`     watcher batches, SIGHUP, git commits -> names to reconcile, resync requests
- `resync`     the full resync: relist the platform once, enqueue every name
- `queue`      the per-name work queue: serialisation, priorities, backoff, parking
- `reconcile`  one batch of names -> one partial reconcile (`only=batch`)
- `outcomes`   backoff, reconcile events, metrics, platform health
- `status`     /readyz, /status, the liveness gate
- `index`      which names each manifest file defines
- `cache`      the platform's last listing and a copy of the store's records
- `parts`      what the concerns share
- `loader`     incremental loads (a walk per resync, a changed file per edit)
- `watcher`    watchfiles on the manifests root, filtered and coalesced, symlink swaps
- `scheduler`  APScheduler sync jobs, followed to completed / failed / stuck
- `backoff`    per-connection retry schedule (pure)
- `http`       /healthz, /readyz, /metrics, /status under uvicorn in the same loop
- `revision`   the manifests' git commit
"""

# The public modules; the others are this package's internals.
__all__ = ["auth", "http", "leader", "replica", "service", "ui"]
