"""`hgf inspect FILE [--scan]` and `hgf convert IN OUT`: checkpoint files from the command line.

inspect prints the tensor table of a torch (.bin/.pt, zip or legacy) or safetensors file, a plain
pickle, or a checkpoint directory, without reading tensor data; --scan first reports unsafe
content, executing nothing. convert rewrites any of those formats as any other, bit-exact.
Everything printed that comes from a file (tensor names, findings) has its control characters
escaped, so a crafted name cannot move the cursor or forge an output line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

import pickle_io
from bridge.cli.terminal import printable
from bridge.errors import BridgeError
from pickle_io.scan import SAFE, UNREADABLE, UNSAFE, scan, verdict
from pickle_io.sharded import checkpoint_files, load_sharded, save_sharded
from pickle_io.safetensors_io import write_safetensors

_SAFETENSORS_SUFFIX = ".safetensors"
_TORCH_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_SUFFIX_FORMATS = {_SAFETENSORS_SUFFIX: ("safetensors",), **{
    suffix: ("zip", "legacy") for suffix in _TORCH_SUFFIXES}}


class ConvertError(BridgeError):
    """An output path or format that `hgf convert` cannot write."""


def register(subparsers: Any) -> None:
    """Add the `inspect` and `convert` subcommands to the `hgf` parser."""
    inspect_parser = subparsers.add_parser(
        "inspect", help="show the tensors of a checkpoint (or, with --scan, unsafe content)",
        description="Print the tensor table (name, dtype, shape, bytes) of a checkpoint file, "
        "plain pickle or directory without loading tensor data. --scan walks every pickle "
        "without executing it and reports forbidden globals and opcodes and whatever load would "
        "refuse. Exit status with --scan: 0 safe, 1 unsafe content found, 2 not a checkpoint or "
        "unreadable (malformed, truncated).")
    inspect_parser.add_argument("file", type=Path, help="checkpoint file or directory")
    inspect_parser.add_argument("--scan", action="store_true",
                                help="report unsafe content without executing anything")
    inspect_parser.set_defaults(run=run_inspect)

    convert_parser = subparsers.add_parser(
        "convert", help="convert a checkpoint between .bin (zip/legacy), .safetensors and "
        "sharded directories",
        description="Read IN (a .bin/.pt file in zip or legacy format, a .safetensors file, or a "
        "checkpoint directory / index) and write OUT bit-exact. OUT's format follows its name: "
        "*.safetensors, *.bin/*.pt/*.pth/*.ckpt (zip unless --format legacy), or a directory "
        "(sharded, safetensors unless --format zip; created if missing). Another suffix needs "
        "--format; a --format that contradicts the suffix is refused. A file output's folder "
        "must exist.")
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
            label = "UNSAFE" if finding.unsafe else "UNREADABLE"
            print(printable(f"{label} {path}: {finding.where}: {finding.what}"))
        status = max((verdict([finding]) for _, finding in findings), default=SAFE,
                     key=[SAFE, UNREADABLE, UNSAFE].index)
        if status == UNSAFE:
            print(f"{sum(f.unsafe for _, f in findings)} unsafe item(s) found; nothing was executed")
            return UNSAFE
        if status == UNREADABLE:
            print("not a checkpoint, or unreadable; no unsafe content found, nothing was executed")
            return UNREADABLE
        print(printable(f"scan: no unsafe content in {', '.join(str(path) for path in files)}"))
    summaries = [pickle_io.inspect(path) for path in files]
    rows = [(printable(t.name), t.dtype, "x".join(map(str, t.shape)) or "()", t.nbytes)
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


def _output_format(output: Path, requested: Any) -> str:
    """The format of a file output, from its suffix and --format, refusing contradictions."""
    allowed = _SUFFIX_FORMATS.get(output.suffix.lower())
    if allowed is None:
        if requested is None:
            raise ConvertError(
                f"{output}: unknown output suffix {output.suffix!r}; name it *.safetensors or "
                f"*{'/*'.join(_TORCH_SUFFIXES)}, or give --format")
        return requested
    if requested is not None and requested not in allowed:
        raise ConvertError(f"{output}: --format {requested} contradicts the suffix "
                           f"{output.suffix!r} (which means {' or '.join(allowed)})")
    return requested or allowed[0]


def _check_parent(output: Path) -> None:
    parent = output.parent
    if not parent.exists():
        raise ConvertError(f"{output}: folder {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise ConvertError(f"{output}: {parent} is not a folder")


def run_convert(args: argparse.Namespace) -> int:
    output: Path = args.output
    to_directory = output.is_dir() or not output.suffix
    if to_directory:
        if args.format == "legacy":
            raise ConvertError("sharded outputs are zip .bin or safetensors, not legacy")
        if output.exists() and not output.is_dir():
            raise ConvertError(f"{output}: exists and is not a folder (a name without a suffix "
                               "is a sharded directory output)")
        _check_parent(output)
    else:
        output_format = _output_format(output, args.format)
        _check_parent(output)
    obj = _read_any(args.input)
    if to_directory:
        shard_format = "bin" if args.format == "zip" else "safetensors"
        created = not output.exists()
        written = save_sharded(_flat_state_dict(obj, output), output,
                               max_shard_size=args.max_shard_size, format=shard_format)
        if created:
            print(f"created directory {printable(str(output))}")
        print(printable(f"wrote {len(written)} file(s) to {output} ({shard_format})"))
        return 0
    if output_format == "safetensors":
        write_safetensors(_flat_state_dict(obj, output), output)
    else:
        pickle_io.save(obj, output, format=output_format)
    print(printable(f"wrote {output} ({output_format})"))
    return 0
