"""`python -m functions.cli`, the same as the `fanout` console script."""

from functions.cli.main import main

raise SystemExit(main())
