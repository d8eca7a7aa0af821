"""Allow ``python -m qemuwrap``."""

from qemuwrap.cli import main

raise SystemExit(main())
