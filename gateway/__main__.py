"""``python -m gateway`` is the ``gagiteck-gateway`` command."""

from gateway.cli import main

raise SystemExit(main())
