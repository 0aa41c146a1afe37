"""The ZIP container of torch's checkpoint format: a strict central-directory reader and an
aligned, deterministic ZIP64 writer.

Reading walks the central directory (never the local headers' sizes: recent writers put sizes in
data descriptors after each payload), tolerates bytes before the archive, and gives each entry's
payload offset so STORED payloads can be memory-mapped in place. Writing places every payload at a
multiple of 64 bytes (torch pads the local header's extra field with an `FB` record of `Z`s), uses
fixed timestamps and the caller's record order, and switches to ZIP64 fields only where a size or
offset needs it.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, List, Sequence, Tuple

from isal.isal_zlib import crc32  # ISA-L's CRC-32: zlib's results, about 4x its speed
from pickle_io.atomic_file import IOV_MAX, preallocate, writev_all
from pickle_io.errors import CheckpointError
from pickle_io.limits import LIMITS

ALIGNMENT = 64
# Sizes and offsets at or above this are written in ZIP64 extra fields. A module constant so
# tests can lower it and exercise the ZIP64 path without writing 4 GiB.
ZIP64_LIMIT = 0xFFFFFFFF
_ZIP64_COUNT_LIMIT = 0xFFFF

_LOCAL_HEADER = struct.Struct("<4sHHHHHLLLHH")
_LOCAL_HEADER_LENGTHS = struct.Struct("<4s22xHH")  # the signature, name and extra lengths
_CENTRAL_HEADER = struct.Struct("<4sBBBBHHHHLLLHHHHHLL")
_END_RECORD = struct.Struct("<4sHHHHLLH")
_ZIP64_END_RECORD = struct.Struct("<4sQHHLLQQQQ")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_END_SIGNATURE = b"PK\x06\x06"
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_EXTRA_ID = 0x0001
_PADDING_EXTRA_ID = 0x4246  # "FB", as torch writes it
_FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800
_STORED, _DEFLATED = 0, 8
_MAX_COMMENT = 0xFFFF
_SMALL_RECORD = 2**20  # records this small may inflate past the ratio limit (zero padding)
# Payloads of HASHED_ALONGSIDE bytes or more are hashed by a second thread while they are written,
# when they add up to OVERLAP_FROM bytes or more (below that, waking a thread costs more than the
# hashing it would hide, on a busy machine many times more).
HASHED_ALONGSIDE = 2**20
OVERLAP_FROM = 2**26
WRITE_BATCH = 2**22  # bytes gathered before a writev


@dataclass(frozen=True, slots=True)
class ZipEntry:
    name: str
    method: int
    compressed_size: int
    size: int
    header_offset: int  # already corrected for bytes before the archive


def is_safe_entry_name(name: str) -> bool:
    """No absolute paths, backslashes, NULs or `..`/`.` components."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return False
    parts = name.split("/")
    return ".." not in parts and "." not in parts


class ZipReader:
    """The entries of a ZIP archive held in `file` (only positioned reads are used)."""

    def __init__(self, file: BinaryIO, filename: str) -> None:
        self.file = file
        self.filename = filename
        self.file_size = os.fstat(file.fileno()).st_size
        self.entries: Dict[str, ZipEntry] = {}
        self.directory_start = 0
        self._read_directory()
        self._entry_limits = self._disjoint_ranges()

    def _disjoint_ranges(self) -> Dict[int, int]:
        """header offset -> where the next entry (or the central directory) starts. Every
        payload must end there: entries whose bytes overlap are refused (400 storage records
        over one payload would make an owned load allocate 400 copies)."""
        offsets = sorted(entry.header_offset for entry in self.entries.values())
        for first, second in zip(offsets, offsets[1:]):
            if first == second:
                raise CheckpointError(f"{self.filename}: two zip entries share one local header")
        return dict(zip(offsets, offsets[1:] + [self.directory_start]))

    def _pread(self, size: int, offset: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.file_size:
            raise CheckpointError(
                f"{self.filename}: truncated zip: {size} bytes wanted at offset {offset}, "
                f"file has {self.file_size}")
        data = os.pread(self.file.fileno(), size, offset)
        if len(data) != size:
            raise CheckpointError(f"{self.filename}: short read at offset {offset}")
        return data

    def _read_directory(self) -> None:
        tail_size = min(self.file_size, _END_RECORD.size + _MAX_COMMENT)
        tail_start = self.file_size - tail_size
        tail = self._pread(tail_size, tail_start)
        end_position = tail.rfind(_END_SIGNATURE)
        if end_position < 0 or end_position + _END_RECORD.size > len(tail):
            raise CheckpointError(f"{self.filename}: not a zip archive (no end of central directory)")
        (_, disk, directory_disk, _, count, directory_size, directory_offset,
         _) = _END_RECORD.unpack_from(tail, end_position)
        if disk != 0 or directory_disk != 0:
            raise CheckpointError(f"{self.filename}: multi-disk zip archives are not supported")
        directory_end = tail_start + end_position
        locator_position = directory_end - _ZIP64_LOCATOR.size
        if locator_position >= 0 and self._pread(4, locator_position) == _ZIP64_LOCATOR_SIGNATURE:
            # The ZIP64 end record sits right before its locator; its recorded offset would be
            # wrong when bytes precede the archive, so find it by position (as zipfile does).
            record_position = locator_position - _ZIP64_END_RECORD.size
            record = self._pread(_ZIP64_END_RECORD.size, record_position)
            (signature, _, _, _, _, _, _, count, directory_size,
             directory_offset) = _ZIP64_END_RECORD.unpack(record)
            if signature != _ZIP64_END_SIGNATURE:
                raise CheckpointError(f"{self.filename}: corrupt ZIP64 end of central directory")
            directory_end = record_position
        directory_start = directory_end - directory_size
        if directory_start < 0 or directory_offset > directory_start:
            raise CheckpointError(f"{self.filename}: central directory size/offset out of range")
        prefix_length = directory_start - directory_offset  # bytes prepended to the archive
        if count > directory_size // _CENTRAL_HEADER.size:
            raise CheckpointError(f"{self.filename}: central directory claims {count} entries")
        self.directory_start = directory_start
        directory = self._pread(directory_size, directory_start)
        position = 0
        for _ in range(count):
            entry, position = self._parse_central_header(directory, position, prefix_length)
            if entry.name in self.entries:
                raise CheckpointError(f"{self.filename}: duplicate zip entry {entry.name!r}")
            self.entries[entry.name] = entry

    def _parse_central_header(self, directory: bytes, position: int,
                              prefix_length: int) -> Tuple[ZipEntry, int]:
        if position + _CENTRAL_HEADER.size > len(directory):
            raise CheckpointError(f"{self.filename}: truncated central directory")
        fields = _CENTRAL_HEADER.unpack_from(directory, position)
        (signature, _, _, _, _, flags, method, _, _, _, compressed_size, size, name_length,
         extra_length, comment_length, disk, _, _, header_offset) = fields
        if signature != _CENTRAL_SIGNATURE:
            raise CheckpointError(f"{self.filename}: corrupt central directory at entry {position}")
        position += _CENTRAL_HEADER.size
        end = position + name_length + extra_length + comment_length
        if end > len(directory):
            raise CheckpointError(f"{self.filename}: truncated central directory")
        raw_name = directory[position:position + name_length]
        extra = directory[position + name_length:position + name_length + extra_length]
        try:
            name = raw_name.decode("utf-8" if flags & _FLAG_UTF8 else "cp437")
        except UnicodeDecodeError:
            raise CheckpointError(f"{self.filename}: zip entry name is not UTF-8") from None
        if not is_safe_entry_name(name):
            raise CheckpointError(f"{self.filename}: unsafe zip entry name {name!r}")
        if flags & _FLAG_ENCRYPTED:
            raise CheckpointError(f"{self.filename}: zip entry {name!r} is encrypted")
        if method not in (_STORED, _DEFLATED):
            raise CheckpointError(f"{self.filename}: zip entry {name!r} uses compression {method}")
        size, compressed_size, header_offset = self._apply_zip64_extra(
            extra, name, size, compressed_size, header_offset, disk)
        entry = ZipEntry(name, method, compressed_size, size, header_offset + prefix_length)
        return entry, end

    def _apply_zip64_extra(self, extra: bytes, name: str, size: int, compressed_size: int,
                           header_offset: int, disk: int) -> Tuple[int, int, int]:
        position = 0
        while position + 4 <= len(extra):
            field_id, field_size = struct.unpack_from("<HH", extra, position)
            position += 4
            if field_id == _ZIP64_EXTRA_ID:
                values = extra[position:position + field_size]
                wanted = [size == 0xFFFFFFFF, compressed_size == 0xFFFFFFFF,
                          header_offset == 0xFFFFFFFF, disk == 0xFFFF]
                if 8 * sum(wanted[:3]) > len(values):
                    raise CheckpointError(f"{self.filename}: short ZIP64 field for {name!r}")
                numbers = struct.unpack_from(f"<{sum(wanted[:3])}Q", values)
                numbers_iter = iter(numbers)
                if wanted[0]:
                    size = next(numbers_iter)
                if wanted[1]:
                    compressed_size = next(numbers_iter)
                if wanted[2]:
                    header_offset = next(numbers_iter)
            position += field_size
        return size, compressed_size, header_offset

    def payload_offset(self, entry: ZipEntry) -> int:
        """Where an entry's (possibly compressed) bytes start, from its own local header."""
        header = self._pread(_LOCAL_HEADER.size, entry.header_offset)
        signature, name_length, extra_length = _LOCAL_HEADER_LENGTHS.unpack(header)
        if signature != _LOCAL_SIGNATURE:
            raise CheckpointError(f"{self.filename}: bad local header for {entry.name!r}")
        offset = entry.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        if offset + entry.compressed_size > self._entry_limits[entry.header_offset]:
            raise CheckpointError(f"{self.filename}: zip entry {entry.name!r} overlaps the next "
                                  "entry or runs past its end")
        return offset

    def stored_offset(self, entry: ZipEntry) -> int:
        """Where a STORED entry's `entry.size` bytes start (its payload is its contents)."""
        offset = self.payload_offset(entry)
        if entry.size != entry.compressed_size:
            raise CheckpointError(f"{self.filename}: stored entry {entry.name!r} sizes differ")
        return offset

    def read(self, entry: ZipEntry) -> bytes:
        """An entry's uncompressed bytes (DEFLATED ones inflated, never beyond their stated size)."""
        if entry.method == _STORED:
            return self._pread(entry.size, self.stored_offset(entry))
        self._check_inflated_size(entry)
        data = self._pread(entry.compressed_size, self.payload_offset(entry))
        return inflate(data, entry.size, f"{self.filename}: {entry.name}")


    def _check_inflated_size(self, entry: ZipEntry) -> None:
        """Bound what a DEFLATED record may inflate to, before inflating anything."""
        what = f"{self.filename}: zip entry {entry.name!r}"
        ratio = LIMITS.max_inflate_ratio
        if entry.size > _SMALL_RECORD and entry.size > ratio * entry.compressed_size:
            raise CheckpointError(
                f"{what} would inflate {entry.compressed_size} bytes to {entry.size} (more than "
                f"{ratio}x; pickle_io.LIMITS.max_inflate_ratio)")
        if entry.name.endswith(".pkl") and entry.size > LIMITS.max_pickle_bytes:
            raise CheckpointError(
                f"{what}: a pickle of {entry.size} bytes inflated (more than "
                f"{LIMITS.max_pickle_bytes}; pickle_io.LIMITS.max_pickle_bytes)")


def inflate(data: bytes, size: int, what: str) -> bytes:
    """Raw-DEFLATE decompression that refuses to produce more than `size` bytes."""
    decompressor = zlib.decompressobj(-15)
    try:
        result = decompressor.decompress(data, size + 1)
    except zlib.error as error:
        raise CheckpointError(f"{what}: corrupt DEFLATE data ({error})") from None
    if len(result) != size:
        raise CheckpointError(f"{what}: inflates to {len(result)} bytes, directory says {size}")
    return result


# ----- writing -------------------------------------------------------------------------------


@dataclass
class PlacedRecord:
    name: bytes
    payload: memoryview
    header_offset: int
    header: bytes  # local header without its CRC filled in
    payload_offset: int


def _local_header_length(name: bytes, zip64: bool, offset: int) -> Tuple[int, int]:
    """(length of the local header, padding bytes) putting the payload on a 64-byte boundary."""
    fixed = _LOCAL_HEADER.size + len(name) + (20 if zip64 else 0) + 4  # 4: the FB field header
    padding = -(offset + fixed) % ALIGNMENT
    return fixed + padding, padding


def _zip64_extra(values: Sequence[int]) -> bytes:
    return struct.pack(f"<HH{len(values)}Q", _ZIP64_EXTRA_ID, 8 * len(values), *values)


_PADDING_FIELDS = [struct.pack("<HH", _PADDING_EXTRA_ID, padding) + b"Z" * padding
                   for padding in range(ALIGNMENT)]


def place_records(records: Sequence[Tuple[str, memoryview]]) -> Tuple[List[PlacedRecord], int]:
    """Where each record's local header and payload go, and where the central directory starts."""
    placed = []
    offset = 0
    pack_header = _LOCAL_HEADER.pack
    for name, payload in records:
        encoded = name.encode("utf-8")
        size = payload.nbytes
        zip64 = size >= ZIP64_LIMIT
        header_length, padding = _local_header_length(encoded, zip64, offset)
        extra = (_zip64_extra([size, size]) if zip64 else b"") + _PADDING_FIELDS[padding]
        stated = 0xFFFFFFFF if zip64 else size
        header = pack_header(_LOCAL_SIGNATURE, 45 if zip64 else 20, _FLAG_UTF8, _STORED,
                             0, 0, 0, stated, stated, len(encoded), len(extra)) + encoded + extra
        placed.append(PlacedRecord(encoded, payload, offset, header, offset + header_length))
        offset += header_length + size
    return placed, offset


def _clamp(value: int, limit: int) -> int:
    """The value a 32-bit (or 16-bit) field holds: itself, or all ones when ZIP64 carries it."""
    return limit if value >= min(limit, ZIP64_LIMIT) else value


def _central_directory(placed: Sequence[PlacedRecord], crcs: Sequence[int], start: int) -> bytes:
    parts = []
    pack_header = _CENTRAL_HEADER.pack
    for record, crc in zip(placed, crcs):
        size = record.payload.nbytes
        offset = record.header_offset
        if size < ZIP64_LIMIT and offset < ZIP64_LIMIT:  # the usual case: no ZIP64 field
            parts.append(pack_header(
                _CENTRAL_SIGNATURE, 20, 0, 20, 0, _FLAG_UTF8, _STORED, 0, 0, crc, size, size,
                len(record.name), 0, 0, 0, 0, 0, offset))
            parts.append(record.name)
            continue
        # ZIP64 extra order is fixed: size, compressed size, header offset (those that overflow).
        values = ([size, size] if size >= ZIP64_LIMIT else []) + (
            [offset] if offset >= ZIP64_LIMIT else [])
        extra = _zip64_extra(values)
        parts.append(pack_header(
            _CENTRAL_SIGNATURE, 45, 0, 45, 0, _FLAG_UTF8, _STORED, 0, 0, crc,
            _clamp(size, 0xFFFFFFFF), _clamp(size, 0xFFFFFFFF), len(record.name), len(extra),
            0, 0, 0, 0, _clamp(offset, 0xFFFFFFFF)))
        parts.append(record.name)
        parts.append(extra)
    directory = b"".join(parts)
    size, count = len(directory), len(placed)
    end = b""
    if count >= _ZIP64_COUNT_LIMIT or size >= ZIP64_LIMIT or start >= ZIP64_LIMIT:
        record_position = start + size
        end += _ZIP64_END_RECORD.pack(_ZIP64_END_SIGNATURE, _ZIP64_END_RECORD.size - 12, 45, 45,
                                      0, 0, count, count, size, start)
        end += _ZIP64_LOCATOR.pack(_ZIP64_LOCATOR_SIGNATURE, 0, record_position, 1)
    end += _END_RECORD.pack(_END_SIGNATURE, 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                            _clamp(size, 0xFFFFFFFF), _clamp(start, 0xFFFFFFFF), 0)
    return directory + end


def _with_crc(header: bytes, crc: int) -> bytes:
    return header[:14] + crc.to_bytes(4, "little") + header[18:]


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    view = data.cast("B") if data.format != "B" or data.ndim != 1 else data
    while len(view):
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def write_zip(fd: int, records: Sequence[Tuple[str, memoryview]]) -> None:
    """Write a STORED, 64-byte-aligned ZIP of `records` (name, bytes) to the empty file `fd`.

    Everything is written front to back in few large `writev` calls, straight from the callers'
    buffers. Payloads are hashed just before their header is written, except large ones (see
    HASHED_ALONGSIDE): a second thread hashes those while they are written (ISA-L releases the
    GIL), and their headers' CRC fields are filled in afterwards.
    """
    placed, directory_start = place_records(records)
    preallocate(fd, directory_start)
    alongside = [index for index, record in enumerate(placed)
                 if record.payload.nbytes >= HASHED_ALONGSIDE]
    if sum(placed[index].payload.nbytes for index in alongside) < OVERLAP_FROM:
        alongside = []
    with ThreadPoolExecutor(1) if alongside else contextlib.nullcontext() as hasher:
        if alongside:  # one task, so the thread is woken once
            hashed = hasher.submit(lambda: [crc32(placed[index].payload) for index in alongside])
        crcs = _write_records(fd, placed, set(alongside))
        if alongside:
            for index, crc in zip(alongside, hashed.result()):
                crcs[index] = crc
    for index in alongside:
        os.pwrite(fd, crcs[index].to_bytes(4, "little"), placed[index].header_offset + 14)
    _pwrite_all(fd, memoryview(_central_directory(placed, crcs, directory_start)),
                directory_start)


def _write_records(fd: int, placed: Sequence[PlacedRecord], hashed_elsewhere: set) -> List[Any]:
    """Write every local header and payload in order; the CRCs computed here (None for records
    in `hashed_elsewhere`, whose headers go out with a zero CRC)."""
    crcs: List[Any] = [None] * len(placed)
    pending: List[Any] = []  # buffers not yet written
    pending_bytes = 0
    for index, record in enumerate(placed):
        payload = record.payload
        if payload.format != "B" or payload.ndim != 1:
            payload = payload.cast("B")
        if index in hashed_elsewhere:
            pending.append(record.header)
        else:
            crcs[index] = crc32(payload)
            pending.append(_with_crc(record.header, crcs[index]))
        pending.append(payload)
        pending_bytes += len(record.header) + len(payload)
        if pending_bytes >= WRITE_BATCH or len(pending) >= IOV_MAX:
            writev_all(fd, pending)
            pending, pending_bytes = [], 0
    writev_all(fd, pending)
    return crcs


def write_headers(fd: int, placed: Sequence[PlacedRecord], crcs: Sequence[int],
                  directory_start: int) -> None:
    """Write the local headers (with their CRCs) and the central directory around payloads
    already written in place (for a caller that writes the payloads itself)."""
    for record, crc in zip(placed, crcs):
        _pwrite_all(fd, memoryview(_with_crc(record.header, crc)), record.header_offset)
    _pwrite_all(fd, memoryview(_central_directory(placed, crcs, directory_start)),
                directory_start)
