"""Resolution of `CALLFS_*` environment variables to configuration keys (api.md §6.1).

Two spellings name the same key:

* the documented one, single underscores, matched against the known key names:
  `CALLFS_BACKEND_S3_ACCESS_KEY` -> `backend.s3_access_key`;
* the nested one of CallFS 1.6, `__` between levels: `CALLFS_SERVER__LISTEN_ADDR`,
  `CALLFS_AUTH__API_KEY_USERS__ALICE` -> entry `alice` of `auth.api_key_users`
  (map entry names become lower case).

This module only names keys; values stay strings and are parsed by the
converter (`config_values`).
"""

import difflib
from collections.abc import Collection, Iterable, Mapping

import attrs

__all__ = ["ENV_PREFIX", "IGNORED_VARIABLES", "EnvAssignment", "env_name", "read_environment"]

ENV_PREFIX = "CALLFS_"
IGNORED_VARIABLES = frozenset({"CALLFS_LOG_MODE"})
"""Variables that are read directly by their users rather than being configuration keys."""
_IGNORED_PREFIXES = ("CALLFS_TEST_",)  # test-suite service locations, never configuration


@attrs.frozen
class EnvAssignment:
    """One environment variable that sets a key, or one entry of a map key."""

    section: str
    key: str
    value: str
    variable: str
    entry: str | None = None

    @property
    def dotted(self) -> str:
        base = f"{self.section}.{self.key}"
        return base if self.entry is None else f"{base}.{self.entry}"


def env_name(section: str, key: str) -> str:
    """The documented variable name of `section.key`."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def _suggest(variable: str, documented: Mapping[str, tuple[str, str]]) -> str:
    candidate = variable.replace("__", "_")
    close = difflib.get_close_matches(candidate, list(documented), n=1, cutoff=0.6)
    if not close:
        return f"unknown environment variable {variable} ignored: no such configuration key"
    section, key = documented[close[0]]
    return (
        f"unknown environment variable {variable} ignored; "
        f"did you mean {close[0]} ({section}.{key})?"
    )


def read_environment(
    environ: Mapping[str, str],
    keys: Mapping[str, Iterable[str]],
    map_keys: Collection[tuple[str, str]],
) -> tuple[list[EnvAssignment], list[str]]:
    """Find the `CALLFS_*` variables of `environ` that set configuration keys.

    Args:
        environ: the environment to read (never `os.environ` implicitly).
        keys: section name -> names of its keys.
        map_keys: the `(section, key)` pairs whose values are maps, which accept
            per-entry variables in the nested spelling.

    Returns:
        The assignments in the order they must be applied (whole values in the
        documented spelling, then in the nested one, then map entries; each group
        sorted by variable name), and warnings for unknown or conflicting variables.
    """
    documented = {
        env_name(section, key): (section, key) for section, names in keys.items() for key in names
    }
    whole: list[EnvAssignment] = []
    nested: list[EnvAssignment] = []
    entries: list[EnvAssignment] = []
    warnings: list[str] = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in IGNORED_VARIABLES:
            continue
        if variable.startswith(_IGNORED_PREFIXES):
            continue
        value = environ[variable]
        if variable in documented:
            section, key = documented[variable]
            whole.append(EnvAssignment(section, key, value, variable))
            continue
        parts = [part.lower() for part in variable[len(ENV_PREFIX) :].split("__")]
        section_keys = set(keys.get(parts[0], ())) if len(parts) >= 2 else set()
        if len(parts) == 2 and parts[1] in section_keys:
            nested.append(EnvAssignment(parts[0], parts[1], value, variable))
        elif (
            len(parts) == 3
            and parts[1] in section_keys
            and (parts[0], parts[1]) in map_keys
            and parts[2]
        ):
            entries.append(EnvAssignment(parts[0], parts[1], value, variable, entry=parts[2]))
        else:
            warnings.append(_suggest(variable, documented))

    by_key = {(a.section, a.key): a for a in whole}
    kept_nested: list[EnvAssignment] = []
    for assignment in nested:
        first = by_key.get((assignment.section, assignment.key))
        if first is None:
            kept_nested.append(assignment)
        elif first.value != assignment.value:
            warnings.append(
                f"{first.variable} and {assignment.variable} both set "
                f"{assignment.section}.{assignment.key} to different values; "
                f"using {first.variable}"
            )
    return [*whole, *kept_nested, *entries], warnings
