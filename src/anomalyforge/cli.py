"""Command-line interface: a thin layer over documented Python functions.

Every sub-command parses its options and calls one library function; any `AnomalyForgeError`
becomes a one-line message on stderr and exit status 2. Each command owns one `_add_*` /
`_run_*` pair below, so concerns stay separate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from anomalyforge import __version__
from anomalyforge.errors import AnomalyForgeError


def _data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """Options every data-reading command shares: PATH, --category, --format."""
    p.add_argument("--data", type=Path, required=required,
                   help="dataset root or one category's folder")
    p.add_argument("--category", default=None, help="category to use when --data holds several")
    p.add_argument("--format", dest="data_format", default=None,
                   help="force the layout (mvtec, mvtec_loco, mvtec3d, visa, btad, magnetic_tile, folder)")


def _parse_params(items: Sequence[str] | None) -> dict:
    """--param key=value pairs; values parsed as JSON when possible (numbers, lists, booleans)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise AnomalyForgeError(f"--param {item!r}: expected key=value")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


# ---- info (foundation) -------------------------------------------------------------------------
def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="counts per split and defect type, few-shot split sizes, data warnings")
    p.add_argument("path", type=Path, help="dataset root or one category's folder")
    p.add_argument("--category", default=None)
    p.add_argument("--format", dest="data_format", default=None)
    p.add_argument("--ratio", type=float, default=1 / 3, help="few-shot training fraction per defect type")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from anomalyforge.data.info import dataset_info, format_info_table

    infos = dataset_info(args.path, category=args.category, data_format=args.data_format, ratio=args.ratio)
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=2))
    else:
        print(format_info_table(infos))
    for info in infos:
        for w in info.get("warnings", []):
            print(f"warning: {info['category']}: {w}", file=sys.stderr)
    return 0


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_info]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomalyforge",
        description="Few-shot defect image–mask synthesis and an honest downstream benchmark.")
    parser.add_argument("--version", action="version", version=f"anomalyforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AnomalyForgeError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        print(f"anomalyforge: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anomalyforge: interrupted (the run can be resumed with the same command)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
