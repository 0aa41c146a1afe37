"""Reporting unsafe content in a checkpoint without executing any of it (`hgf inspect --scan`).

Every pickle in the file is walked opcode by opcode with `pickletools.genops`, which decodes
arguments but runs nothing: globals outside the allowlist, extension-registry and out-of-band
opcodes, TorchScript code and unsafe zip entry names are reported, all of them, also after a
first one and before a broken end. Then the file is read the way `load` reads it (our own
machine, which calls nothing outside the allowlist), and whatever `load` refuses is reported
too, so a scan never calls a file clean that `load` would refuse.

Each finding is unsafe (code or a trick to run code) or only unreadable (malformed, truncated,
not a checkpoint): `verdict` gives the exit status `hgf inspect --scan` uses.
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

from pickle_io.checkpoint import SEVEN_ZIP_MAGIC, detect_format, load
from pickle_io.errors import PickleIOError, UnsafePickleError
from pickle_io.unpickler import ALLOWED_GLOBALS
from pickle_io.zipformat import ZipReader

SAFE, UNSAFE, UNREADABLE = 0, 1, 2  # the exit statuses of `hgf inspect --scan`

_STRING_OPCODES = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
                   "BINSTRING", "SHORT_BINSTRING"}
_FORBIDDEN_OPCODES = {"EXT1", "EXT2", "EXT4", "NEXT_BUFFER", "READONLY_BUFFER"}
_LEGACY_PICKLE_COUNT = 5


@dataclass(frozen=True)
class Finding:
    where: str  # "data.pkl at byte 12", "zip entry", ...
    what: str  # "forbidden global os.system", ...
    unsafe: bool = True  # False: malformed or not a checkpoint, but no code found


def verdict(findings: List[Finding]) -> int:
    """SAFE (0) when there are no findings, UNSAFE (1) when any is unsafe, else UNREADABLE (2)."""
    if not findings:
        return SAFE
    return UNSAFE if any(finding.unsafe for finding in findings) else UNREADABLE


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
        findings.append(Finding(where, f"malformed pickle: {str(error)[:200]}", unsafe=False))
        return findings, -1
    return findings, end


def _check_global(module: str, name: str, where: str, findings: List[Finding]) -> None:
    if (module, name) not in ALLOWED_GLOBALS:
        findings.append(Finding(where, f"forbidden global {module}.{name}"))


def scan(path: os.PathLike) -> List[Finding]:
    """Everything unsafe or malformed in a checkpoint; an empty list when it is clean."""
    with warnings.catch_warnings():  # genops warns about odd escapes in malformed strings
        warnings.simplefilter("ignore", DeprecationWarning)
        findings = _scan_file(path)
        if findings and not findings[-1].unsafe and findings[-1].where == "file":
            return findings  # not a checkpoint at all: load would say the same
        return findings + _load_refusal(path, findings)


def _load_refusal(path: os.PathLike, findings: List[Finding]) -> List[Finding]:
    """What `load` refuses that the opcode walk did not already report."""
    try:
        load(path)
    except PickleIOError as error:
        message = str(error)
        if any(finding.what in message for finding in findings):
            return []
        return [Finding("load", message, unsafe=isinstance(error, UnsafePickleError))]
    return []


def _scan_file(path: os.PathLike) -> List[Finding]:
    with builtins.open(path, "rb") as file:
        head = file.read(8)
    if head.startswith(SEVEN_ZIP_MAGIC):
        return [Finding("file", "a 7z archive, not a PyTorch checkpoint", unsafe=False)]
    try:
        kind = detect_format(path)
    except PickleIOError as error:
        findings = []
        if head.startswith(b"\x80"):  # a broken bare pickle: say what it would have run
            with builtins.open(path, "rb") as file:
                findings += [finding for finding in _scan_pickle(file, "pickle")[0]
                             if finding.unsafe]
        return findings + [Finding("file", str(error), unsafe=False)]
    if kind == "safetensors":
        return []  # no code can hide in safetensors (load still checks the header)
    if kind == "legacy":
        return _scan_legacy(path)
    if kind == "pickle":
        with builtins.open(path, "rb") as file:
            return _scan_pickle(file, "pickle")[0]
    return _scan_zip(path)


def _scan_zip(path: os.PathLike) -> List[Finding]:
    findings: List[Finding] = []
    with builtins.open(path, "rb") as file:
        try:
            reader = ZipReader(file, str(path))
        except PickleIOError as error:  # entry names such as ../x are an attack on extractors
            return [Finding("zip directory", str(error), unsafe="unsafe zip entry" in str(error))]
        for name, entry in reader.entries.items():
            if name.endswith("/constants.pkl") or "/code/" in name:
                findings.append(Finding(name, "TorchScript content (code or constants)"))
            if name.endswith(".pkl"):
                try:
                    data = reader.read(entry)
                except PickleIOError as error:
                    findings.append(Finding(name, str(error), unsafe=False))
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
