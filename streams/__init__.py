"""The Faust app of the album pipeline, its settings, topics, codecs, web views and commands."""

from streams.settings import Settings, SettingsError, settings

__all__ = ["Settings", "SettingsError", "settings"]
