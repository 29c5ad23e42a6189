"""The daemon behind `chanops run`: watcher + scheduler + reconcile loop + HTTP endpoints.

- `runner`     Daemon: the interruptible-sleep loop, signals, /status state (start here)
- `watcher`    watchfiles on the manifests root, filtered and coalesced, symlink swaps
- `loader`     incremental re-load of changed files (same result as load_manifests)
- `scheduler`  APScheduler sync jobs, followed to completed / failed / stuck
- `backoff`    per-connection retry schedule (pure)
- `http`       /healthz, /readyz, /metrics, /status under uvicorn in the same loop
- `revision`   the manifests' git commit
"""
