"""`python -m audioavatar ...` runs the same CLI as the `audioavatar` command."""
from audioavatar.cli import main

raise SystemExit(main())
