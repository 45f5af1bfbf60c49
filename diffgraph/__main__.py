"""`python -m diffgraph` runs the same command as the `diffgraph` console script."""

from diffgraph.cli import main

raise SystemExit(main())
