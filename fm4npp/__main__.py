from __future__ import annotations

import sys

from fm4npp.cli.main import main

sys.exit(main())
