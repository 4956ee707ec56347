"""The `kubecarbon` console script: one subcommand per part of the product.

Each subcommand's module is imported by name only when it runs, so that an
agent-only install (extra `agent`) never imports numpy or the Kubernetes client,
and this package depends on neither part.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module, function, one-line help); each function takes argv and returns an exit code
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "agent": ("agent.cli", "main", "run the node agent (one per node, DaemonSet)"),
    "collector": ("collector.main", "main", "run the collector (ingest, model, /metrics)"),
    "demo": ("collector.demo", "main", "run a collector, a real agent and a simulated fleet"),
    "report": ("collector.report", "main", "write a period report from Prometheus"),
}


def _usage() -> str:
    lines = ["usage: kubecarbon <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run `kubecarbon <command> --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        from importlib.metadata import version

        print(f"kubecarbon {version('kubecarbon')}")
        return 0
    command = SUBCOMMANDS.get(args[0])
    if command is None:
        print(f"kubecarbon: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, function_name, _ = command
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        print(
            f"kubecarbon {args[0]}: missing dependency {exc.name!r}; "
            f"install the matching extra, e.g. pip install 'kubecarbon[{args[0]}]'",
            file=sys.stderr,
        )
        return 2
    entry: Callable[[list[str]], int] = getattr(module, function_name)
    return entry(args[1:])


if __name__ == "__main__":
    sys.exit(main())
