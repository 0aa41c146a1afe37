"""Reporting unsafe content in a checkpoint without executing any of it (`hgf inspect --scan`).

Every pickle in the file is walked opcode by opcode with `pickletools.genops`, which decodes
arguments but runs nothing. Globals outside the allowlist, extension-registry and out-of-band
opcodes, TorchScript code, unsafe zip entry names and malformed structure are reported.
"""

from __future__ import annotations

import builtins
import io
import mmap
import os
import pickletools
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from pickle_io.checkpoint import SEVEN_ZIP_MAGIC, detect_format
from pickle_io.errors import PickleIOError
from pickle_io.unpickler import ALLOWED_GLOBALS
from pickle_io.zipformat import ZipReader

_STRING_OPCODES = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
                   "BINSTRING", "SHORT_BINSTRING"}
_FORBIDDEN_OPCODES = {"EXT1", "EXT2", "EXT4", "NEXT_BUFFER", "READONLY_BUFFER"}
_LEGACY_PICKLE_COUNT = 5


@dataclass(frozen=True)
class Finding:
    where: str  # "data.pkl at byte 12", "zip entry", ...
    what: str  # "forbidden global os.system", ...


def _scan_pickle(stream: Any, where: str) -> Tuple[List[Finding], int]:
    """Findings in the pickle at the stream's position (a file-like object: BytesIO or mmap),
    and the position after it (-1 when malformed)."""
    findings: List[Finding] = []
    recent_strings: List[Optional[str]] = []
    memo: Dict[Any, Optional[str]] = {}
    end = -1
    try:
        for opcode, argument, position in pickletools.genops(stream):
            name = opcode.name
            if name in _STRING_OPCODES:
                recent_strings.append(argument if isinstance(argument, str) else None)
                continue
            if name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[argument] = recent_strings[-1] if recent_strings else None
                continue
            if name == "MEMOIZE":
                memo[len(memo)] = recent_strings[-1] if recent_strings else None
                continue
            if name in ("BINGET", "LONG_BINGET", "GET"):
                recent_strings.append(memo.get(argument))
                continue
            if name in ("GLOBAL", "INST"):
                module, _, global_name = argument.partition(" ")
                _check_global(module, global_name, f"{where} at byte {position}", findings)
            elif name == "STACK_GLOBAL":
                names = recent_strings[-2:]
                if len(names) < 2 or None in names:
                    findings.append(Finding(f"{where} at byte {position}",
                                            "STACK_GLOBAL with a computed name"))
                else:
                    _check_global(names[0], names[1], f"{where} at byte {position}", findings)
            elif name in _FORBIDDEN_OPCODES:
                findings.append(Finding(f"{where} at byte {position}", f"forbidden opcode {name}"))
            elif name == "STOP":
                end = stream.tell()
            recent_strings.append(None)
    except Exception as error:  # genops raises ValueError and friends on malformed input
        findings.append(Finding(where, f"malformed pickle: {error}"))
        return findings, -1
    return findings, end


def _check_global(module: str, name: str, where: str, findings: List[Finding]) -> None:
    if (module, name) not in ALLOWED_GLOBALS:
        findings.append(Finding(where, f"forbidden global {module}.{name}"))


def scan(path: os.PathLike) -> List[Finding]:
    """Everything unsafe or malformed in a checkpoint; an empty list when it is clean."""
    with warnings.catch_warnings():  # genops warns about odd escapes in malformed strings
        warnings.simplefilter("ignore", DeprecationWarning)
        return _scan_file(path)


def _scan_file(path: os.PathLike) -> List[Finding]:
    with builtins.open(path, "rb") as file:
        head = file.read(8)
    if head.startswith(SEVEN_ZIP_MAGIC):
        return [Finding("file", "a 7z archive, not a PyTorch checkpoint")]
    try:
        kind = detect_format(path)
    except PickleIOError as error:
        findings = [Finding("file", str(error))]
        if head.startswith(b"\x80"):  # a bare pickle: say what it would have run
            with builtins.open(path, "rb") as file:
                findings += _scan_pickle(file, "pickle")[0]
        return findings
    if kind == "safetensors":
        return []  # no code can hide in safetensors
    if kind == "legacy":
        return _scan_legacy(path)
    return _scan_zip(path)


def _scan_zip(path: os.PathLike) -> List[Finding]:
    findings: List[Finding] = []
    with builtins.open(path, "rb") as file:
        try:
            reader = ZipReader(file, str(path))
        except PickleIOError as error:
            return [Finding("zip directory", str(error))]
        for name, entry in reader.entries.items():
            if name.endswith("/constants.pkl") or "/code/" in name:
                findings.append(Finding(name, "TorchScript content (code or constants)"))
            if name.endswith(".pkl"):
                try:
                    data = reader.read(entry)
                except PickleIOError as error:
                    findings.append(Finding(name, str(error)))
                    continue
                findings.extend(_scan_pickle(io.BytesIO(data), name)[0])
    return findings


def _scan_legacy(path: os.PathLike) -> List[Finding]:
    findings: List[Finding] = []
    with builtins.open(path, "rb") as file:
        data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        for index in range(_LEGACY_PICKLE_COUNT):
            found, position = _scan_pickle(data, f"pickle {index + 1}")
            findings.extend(found)
            if position < 0:
                break
    return findings
