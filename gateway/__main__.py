"""``python -m gateway`` = ``voice-gateway``."""

from .cli import main

raise SystemExit(main())
