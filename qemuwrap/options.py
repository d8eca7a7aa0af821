"""What the CLI passes down to the operations: a plain bag (argparse's namespace fits).

A module of its own, not the launcher's: ``save``, ``status``, ``destroy`` and the other
requests to a supervisor need it, and importing the launcher to get it pulls in the
whole model (measured: 87 ms of a 120 ms ``qemuwrap save`` start-up, idle machine).
"""

from __future__ import annotations


class Options:
    def __init__(self, state_dir: str | None = None, shutdown_timeout: float = 30.0,
                 transient: bool = False, console: bool = False, caps: str | None = None,
                 allow_duplicate_genid: bool = False, verbose: bool = False):
        self.state_dir = state_dir
        self.shutdown_timeout = shutdown_timeout
        self.transient = transient
        self.console = console
        self.caps = caps
        self.allow_duplicate_genid = allow_duplicate_genid
        self.verbose = verbose
