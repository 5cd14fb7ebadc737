"""`python -m pipeline` entry point."""

from .cli import main

raise SystemExit(main())
