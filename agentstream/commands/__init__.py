"""Sub-commands of the ``agentstream`` CLI, one module each (see agentstream.cli)."""
