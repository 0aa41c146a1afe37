"""`hgf inspect FILE [--scan]` and `hgf convert IN OUT`: checkpoint files from the command line.

inspect prints the tensor table of a torch (.bin/.pt, zip or legacy) or safetensors file, or of a
checkpoint directory, without reading tensor data; --scan first reports unsafe content, executing
nothing. convert rewrites any of those formats as any other, bit-exact.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

import pickle_io
from pickle_io.scan import scan
from pickle_io.sharded import checkpoint_files, load_sharded, save_sharded
from pickle_io.safetensors_io import write_safetensors

_SAFETENSORS_SUFFIX = ".safetensors"


def register(subparsers: Any) -> None:
    """Add the `inspect` and `convert` subcommands to the `hgf` parser."""
    inspect_parser = subparsers.add_parser(
        "inspect", help="show the tensors of a checkpoint (or, with --scan, unsafe content)",
        description="Print the tensor table (name, dtype, shape, bytes) of a checkpoint file or "
        "directory without loading tensor data. --scan walks every pickle without executing it "
        "and reports forbidden globals and opcodes; the exit status is 1 when it finds any.")
    inspect_parser.add_argument("file", type=Path, help="checkpoint file or directory")
    inspect_parser.add_argument("--scan", action="store_true",
                                help="report unsafe content without executing anything")
    inspect_parser.set_defaults(run=run_inspect)

    convert_parser = subparsers.add_parser(
        "convert", help="convert a checkpoint between .bin (zip/legacy), .safetensors and "
        "sharded directories",
        description="Read IN (a .bin/.pt file in zip or legacy format, a .safetensors file, or a "
        "checkpoint directory / index) and write OUT bit-exact. OUT's format follows its name: "
        "*.safetensors, *.bin/*.pt (zip unless --format legacy), or a directory (sharded, "
        "safetensors unless --format zip).")
    convert_parser.add_argument("input", type=Path, metavar="IN")
    convert_parser.add_argument("output", type=Path, metavar="OUT")
    convert_parser.add_argument("--format", choices=("zip", "legacy", "safetensors"),
                                help="output format (default: from OUT's name)")
    convert_parser.add_argument("--max-shard-size", default="5GB",
                                help="shard size for directory outputs (default 5GB)")
    convert_parser.set_defaults(run=run_convert)


def _format_bytes(count: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def run_inspect(args: argparse.Namespace) -> int:
    files = checkpoint_files(args.file)
    if args.scan:
        findings = [(path, finding) for path in files for finding in scan(path)]
        for path, finding in findings:
            print(f"UNSAFE {path}: {finding.where}: {finding.what}")
        if findings:
            print(f"{len(findings)} unsafe item(s) found; nothing was executed")
            return 1
        print(f"scan: no unsafe content in {', '.join(str(path) for path in files)}")
    summaries = [pickle_io.inspect(path) for path in files]
    rows = [(t.name, t.dtype, "x".join(map(str, t.shape)) or "()", t.nbytes)
            for summary in summaries for t in summary.tensors]
    width = max([len(row[0]) for row in rows] + [4])
    print(f"{'name':<{width}}  {'dtype':<14} {'shape':<20} {'bytes':>14}")
    for name, dtype, shape, nbytes in rows:
        print(f"{name:<{width}}  {dtype:<14} {shape:<20} {nbytes:>14}")
    total = sum(row[3] for row in rows)
    formats = ", ".join(sorted({summary.format for summary in summaries}))
    print(f"{len(rows)} tensors, {total} bytes ({_format_bytes(total)}), format {formats}")
    return 0


def _read_any(path: Path) -> Any:
    if path.is_dir() or path.name.endswith(".json"):
        return load_sharded(path)
    return pickle_io.load(path)


def _flat_state_dict(obj: Any, output: Path) -> Dict[str, np.ndarray]:
    if not isinstance(obj, dict) or not all(
            isinstance(name, str) and isinstance(value, np.ndarray) for name, value in obj.items()):
        raise pickle_io.PickleIOError(
            f"{output}: safetensors and sharded outputs hold a flat {{name: tensor}} mapping; "
            "the input holds something else")
    return dict(obj)


def run_convert(args: argparse.Namespace) -> int:
    obj = _read_any(args.input)
    output: Path = args.output
    to_directory = output.is_dir() or not output.suffix
    if to_directory:
        shard_format = "bin" if args.format == "zip" else "safetensors"
        if args.format == "legacy":
            raise pickle_io.PickleIOError("sharded outputs are zip .bin or safetensors, not legacy")
        written = save_sharded(_flat_state_dict(obj, output), output,
                               max_shard_size=args.max_shard_size, format=shard_format)
        print(f"wrote {len(written)} file(s) to {output} ({shard_format})")
        return 0
    output_format = args.format or ("safetensors" if output.suffix == _SAFETENSORS_SUFFIX else "zip")
    if output_format == "safetensors":
        write_safetensors(_flat_state_dict(obj, output), output)
    else:
        pickle_io.save(obj, output, format=output_format)
    print(f"wrote {output} ({output_format})")
    return 0
