"""Builds the scenario kit, labelled clips composited from real footage: a DEVELOPMENT AID, not a
benchmark of record. What it writes, the split and the data terms: scenario_kit/__init__.py.

    python benchmarks/scenarios.py --out DIR [--scenes vtest,ped2,ped1] [--types standing,...] ...
"""

import sys

from scenario_kit import main

if __name__ == "__main__":
    sys.exit(main())
