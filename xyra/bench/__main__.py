"""``python -m xyra.bench``."""

from xyra.bench import main

raise SystemExit(main())
