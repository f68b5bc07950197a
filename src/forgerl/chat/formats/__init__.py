"""The built-in chat formats. Importing this package registers each one by name."""

from forgerl.chat.formats import hermes, json_tools, minimax_m2

__all__ = ["hermes", "json_tools", "minimax_m2"]
