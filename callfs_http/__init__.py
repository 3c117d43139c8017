"""CallFS HTTP layer: a Starlette application around the engine."""
