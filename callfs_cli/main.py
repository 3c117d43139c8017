"""The `callfs` command line (api.md §6.4).

    callfs                                   same as `callfs server`
    callfs server [-c|--config FILE]         load, validate and run the server
    callfs config validate [-c|--config FILE]
    callfs --help | -h | callfs <command> --help

Errors print `Error: <message>` on standard error and exit 1 (unknown commands
included); `--help` exits 0.
"""

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn, TextIO

from callfs_cli.config import ConfigError, load_settings, mask_dsn, validate
from callfs_cli.quickstart import QuickstartError, prepare_quickstart

__all__ = ["main"]

_DESCRIPTION = "CallFS: a filesystem served over a REST API."
_COMMANDS = """commands:
  server            load and validate the configuration, then start the API and
                    metrics listeners (the default when no command is given)
  config validate   load and validate the configuration and print a summary
  db migrate        create or upgrade the metadata schema (also done at start-up)

options of every command:
  -c, --config FILE  configuration file (.yaml, .yml or .json); default: the first
                     of config.yaml, config.yml, config.json in the working folder

Every configuration key can also be set with a CALLFS_* environment variable,
e.g. CALLFS_SERVER_LISTEN_ADDR=:8443 (see docs/configuration.md)."""


class _UsageError(Exception):
    pass


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so `main` owns exit codes."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


def _add_config_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=default,
        help="configuration file (.yaml, .yml or .json)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="callfs",
        usage="callfs [-h] [-c FILE] {server,config validate,db migrate} ...",
        description=_DESCRIPTION,
        epilog=_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_option(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="{server,config validate,db migrate}")
    server = commands.add_parser(
        "server",
        help="run the server (default)",
        usage="callfs server [-h] [-c FILE]",
        description="Load and validate the configuration, then start the API and metrics "
        "listeners. SIGINT/SIGTERM shut down gracefully.",
        epilog=_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # SUPPRESS keeps a `-c` given before the command when none is given after it.
    _add_config_option(server, argparse.SUPPRESS)
    config = commands.add_parser(
        "config",
        help="configuration commands: config validate",
        usage="callfs config validate [-h] [-c FILE]",
        description="Configuration commands.",
        epilog=_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = config.add_subparsers(dest="action", metavar="validate", required=True)
    check = actions.add_parser(
        "validate",
        help="validate the configuration and print a summary",
        usage="callfs config validate [-h] [-c FILE]",
        description="Load and validate the configuration and print a summary.",
        epilog=_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_option(check, argparse.SUPPRESS)
    database = commands.add_parser(
        "db",
        help="metadata database commands: db migrate",
        usage="callfs db migrate [-h] [-c FILE]",
        description="Metadata database commands.",
        epilog=_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    db_actions = database.add_subparsers(dest="action", metavar="migrate", required=True)
    migrate = db_actions.add_parser(
        "migrate",
        help="create or upgrade the metadata schema",
        usage="callfs db migrate [-h] [-c FILE]",
        description="Apply the pending schema migrations of the configured metadata store.",
        epilog=_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_option(migrate, argparse.SUPPRESS)
    return parser


def _warn(warnings: Sequence[str], stream: TextIO) -> None:
    for warning in warnings:
        print(f"Warning: {warning}", file=stream)


def _config_validate(config_file: str | None, environ: Mapping[str, str]) -> int:
    out = sys.stdout
    print("Validating configuration...", file=out)
    try:
        loaded = load_settings(config_file, environ=environ)
        validate(loaded)
    except ConfigError as exc:
        print(f"Configuration validation failed: {exc}", file=out)
        return 1
    _warn(loaded.warnings, sys.stderr)
    settings = loaded.settings
    print("Configuration is valid", file=out)
    print(f"Instance ID: {settings.instance_discovery.instance_id}", file=out)
    print(f"Listen Address: {settings.server.listen_addr}", file=out)
    print(f"Metadata Store DSN: {mask_dsn(settings.metadata_store.dsn)}", file=out)
    print(f"Redis Address: {settings.dlm.redis_addr}", file=out)
    print(f"Local FS Root: {settings.backend.localfs_root_path}", file=out)
    if settings.backend.s3_bucket_name:
        print(f"S3 Bucket: {settings.backend.s3_bucket_name}", file=out)
        print(f"S3 Region: {settings.backend.s3_region}", file=out)
    if loaded.quickstart:
        credentials = os.path.join(settings.server.data_dir, "credentials.json")
        print(
            "Note: no API key or secret is configured; `callfs server` will generate them "
            f"in {credentials} (quickstart)",
            file=sys.stderr,
        )
    return 0


def _db_migrate(config_file: str | None, environ: Mapping[str, str]) -> int:
    try:
        loaded = load_settings(config_file, environ=environ)
        validate(loaded)
    except ConfigError as exc:
        print(f"failed to load configuration: {exc}", file=sys.stderr)
        return 1
    from callfs_cli import server  # imported here: it pulls in the adapters

    store = loaded.settings.metadata_store
    code = server.migrate(loaded.settings)
    if code == 0:
        print(f"Metadata schema is up to date ({store.type})")
    return code


def _server(config_file: str | None, environ: Mapping[str, str]) -> int:
    try:
        loaded = load_settings(config_file, environ=environ)
        validate(loaded)
    except ConfigError as exc:
        print(f"failed to load configuration: {exc}", file=sys.stderr)
        return 1
    try:
        settings, info = prepare_quickstart(
            loaded.settings, loaded.quickstart, tls_configured=loaded.tls_configured
        )
    except QuickstartError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    from callfs_cli import server  # imported here: it pulls in the whole server stack

    return server.run(settings, info, loaded.warnings)


def _unknown_command(arguments: Sequence[str]) -> str | None:
    """The first positional argument if it is not a command (argparse's message is obscure)."""
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument in ("-c", "--config"):
            skip = True
        elif not argument.startswith("-"):
            return None if argument in ("server", "config", "db") else argument
    return None


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the `callfs` command and return its exit status.

    Args:
        argv: the arguments after the program name (default: `sys.argv[1:]`).
        environ: the environment to configure from (default: `os.environ`).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    environment = os.environ if environ is None else environ
    unknown = _unknown_command(arguments)
    if unknown is not None:
        print(f'Error: unknown command "{unknown}" for "callfs"', file=sys.stderr)
        print("Run 'callfs --help' for usage.", file=sys.stderr)
        return 1
    try:
        options = _parser().parse_args(arguments)
    except _Exit as exit_:
        return exit_.status
    except _UsageError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        print("Run 'callfs --help' for usage.", file=sys.stderr)
        return 1
    try:
        if options.command == "config":
            return _config_validate(options.config, environment)
        if options.command == "db":
            return _db_migrate(options.config, environment)
        return _server(options.config, environment)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
