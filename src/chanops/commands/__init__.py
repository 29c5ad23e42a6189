"""Command-line commands, one module each (`chanops.cli` imports them lazily by name;
every module exposes `command: click.Command`). `common`, `session`, `git_options`
and `platform` are the shared wiring; the public modules are the ones listed here.
"""

__all__ = ["common", "git_options", "platform", "session"]
