"""Configs: typed dataclasses with per-field help (``dtm config show KIND``), loaded from YAML and ``key=value``
overrides. This package imports neither torch nor transformers, so a bad config fails in well under a second."""

from dtm.config.fields import KeyHelp, describe, setting
from dtm.config.loader import ConfigError, check, from_dict, load_config, save_config, to_dict

__all__ = [
    "ConfigError",
    "KeyHelp",
    "check",
    "describe",
    "from_dict",
    "load_config",
    "save_config",
    "setting",
    "to_dict",
]
