"""Game-server RCON clients."""
