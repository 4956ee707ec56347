"""The `kubecarbon report` command: arguments, then fetch, document, render, write."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import configargparse

from collector.report.builder import ReportBuilder
from collector.report.document import report_document
from collector.report.period import choose_step, iso, parse_time
from collector.report.prometheus import PrometheusClient, ReportError
from collector.report.reduction import ReportData
from collector.report.render import RENDERERS


def build_parser() -> configargparse.ArgumentParser:
    parser = configargparse.ArgumentParser(
        prog="kubecarbon report",
        description="Write a period report (energy, CO2e, avoided CO2e) from Prometheus.",
        auto_env_var_prefix="KUBECARBON_",
        config_file_parser_class=configargparse.YAMLConfigFileParser,
        args_for_setting_config_path=["--config"],
        formatter_class=configargparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--prometheus", default="http://localhost:9090", help="Prometheus base URL")
    add("--start", default="now-24h", help="RFC3339, unix seconds or now-N{s,m,h,d,w}")
    add("--end", default="now", help="RFC3339, unix seconds or now-N{s,m,h,d,w}")
    add("--format", choices=sorted(RENDERERS), default="html")
    add("--output", "-o", type=Path, help="file to write (default: standard output)")
    add("--step", type=float, metavar="SECONDS",
        help="sample spacing (default: about 2,000 samples over the range, at least 1 s)")
    add("--timeout", type=float, default=60.0, metavar="SECONDS", help="per-query timeout")
    add("--progress", choices=("auto", "always", "never"), default="auto",
        help="progress bar on stderr: auto shows it on a terminal when the range needs "
        "several queries per metric")
    return parser


async def fetch(prometheus: str, start: float, end: float, step: float,
                query_timeout_seconds: float, progress: str) -> ReportData:
    client_timeout = aiohttp.ClientTimeout(total=query_timeout_seconds)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        builder = ReportBuilder(PrometheusClient(session, prometheus), start, end, step)
        await builder.probe()
        show = progress == "always" or (
            progress == "auto" and len(builder.windows) > 1 and sys.stderr.isatty())
        if not show:
            return await builder.build()
        from tqdm import tqdm

        with tqdm(total=builder.range_queries, unit="query", file=sys.stderr,
                  desc="kubecarbon report", leave=False) as bar:
            builder.progress = bar.update
            return await builder.build()


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    now = time.time()
    try:
        start = parse_time(args.start, now)
        end = parse_time(args.end, now)
    except ValueError as exc:
        parser.exit(2, f"kubecarbon report: error: {exc}\n")
    if end <= start:
        parser.exit(2, f"kubecarbon report: error: --end {iso(end)} is not after --start "
                       f"{iso(start)}\n")
    if args.step is not None and not (math.isfinite(args.step) and args.step > 0):
        parser.exit(2, "kubecarbon report: error: --step must be a positive number of seconds\n")
    step = args.step or choose_step(end - start)
    try:
        data = asyncio.run(fetch(args.prometheus, start, end, step, args.timeout, args.progress))
    except ReportError as exc:
        print(f"kubecarbon report: error: {exc}", file=sys.stderr)
        return 1
    text = RENDERERS[args.format](report_document(data))
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"kubecarbon report: error: cannot write {args.output}: {exc.strerror}",
                  file=sys.stderr)
            return 1
    return 0
