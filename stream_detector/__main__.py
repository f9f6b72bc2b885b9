"""Entry point for `python -m stream_detector`."""

from stream_detector.cli import main

raise SystemExit(main())
