"""The `callfs` command: configuration, composition root and server process."""
