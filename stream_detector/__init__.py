"""stream-detector: learns what is normal for a camera scene and alerts when live video departs from it.

A package per stage of the data flow (config, capture, model, detect, outputs), wired by daemon;
offline holds fit, eval and bench; cli parses and prints. README.md, "Layout", maps the tree.
"""

__version__ = "0.1.0"
