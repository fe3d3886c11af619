"""analyzer: find coordinated query campaigns (model distillation) in LLM API request logs."""

__version__ = "0.1.0"
