"""Run configuration: YAML recipes + user YAML + ``--set key=value`` overrides, validated into dataclasses."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad option or hyper-parameter. The message is one line naming the option and what is wrong."""
