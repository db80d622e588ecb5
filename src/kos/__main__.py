"""`python -m kos` is the same as the `kos` console script."""

from kos.cli.main import main

raise SystemExit(main())
