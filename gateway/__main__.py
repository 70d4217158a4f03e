"""``python -m gateway`` is the ``gagiteck-gateway`` command."""

from gateway.cli.main import main

raise SystemExit(main())
