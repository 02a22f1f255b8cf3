"""``python -m agentstream`` is the ``agentstream`` command."""

import sys

from agentstream.cli import main

sys.exit(main())
