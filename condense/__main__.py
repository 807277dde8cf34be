from __future__ import annotations

import sys

from condense.cli import main

sys.exit(main())
