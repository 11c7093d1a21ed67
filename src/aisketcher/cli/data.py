"""`aisketcher data ...`: download, inspect, convert and render sketch files."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="download, inspect, convert and render sketch data")
    parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
