"""Workflows (``[[workflows]]``): durable multi-step runs of a ``WorkflowEntrypoint``, persisted on SQLite."""
