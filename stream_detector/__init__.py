"""stream-detector: learns what is normal for a camera scene and alerts when live video departs from it."""

__version__ = "0.1.0"
