"""Typed YAML configuration: schema, loading, dotted overrides."""

from .loader import dump_config, load_config, parse_overrides
from .schema import Config

__all__ = ["Config", "dump_config", "load_config", "parse_overrides"]
