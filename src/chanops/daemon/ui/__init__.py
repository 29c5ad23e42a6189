"""The daemon's read-only status page under /ui/ (docs/ui.md).

- `_views.py`, `_fields.py`: pure page logic from the /status document and the models.
- `_source.py`: reads the daemon's state for the pages (a snapshot per change).
- `_live.py`: the event-sink subscriber behind the server-sent event stream.
- `_auth.py`: who may read the page, and the headers (CSP) every page carries.
- `_app.py`: the Starlette routes and the Jinja2 templates (`templates/`, `static/`).
"""

from chanops.daemon.ui._app import UIOptions, build_ui
from chanops.daemon.ui._auth import UIAuth

__all__ = ["UIAuth", "UIOptions", "build_ui"]
