"""CRC-32 (the ZIP polynomial) of large buffers, computed in pieces on several threads.

The CRC function releases the GIL on large buffers, so pieces hashed on worker threads run in
parallel with each other and with the file writes. The pieces' CRCs are joined with
`crc32_combine`, zlib's own algorithm (multiplication by x^(8n) modulo the CRC polynomial),
which Python's zlib module does not expose.
"""

from __future__ import annotations

import concurrent.futures
from typing import List, Sequence

try:
    # ISA-L's CRC-32 (same polynomial, same results) runs about four times faster than zlib's;
    # it is used when the optional `isal` package is installed.
    from isal.isal_zlib import crc32

    FAST_CRC32 = True
except ImportError:
    from zlib import crc32

    FAST_CRC32 = False

PIECE = 16 * 2**20  # bytes hashed per task on a worker thread
_POLYNOMIAL = 0xEDB88320  # bit-reflected, as zlib uses it


def _multiply(a: int, b: int) -> int:
    """a(x) * b(x) modulo the CRC polynomial, in zlib's reflected bit order (multmodp)."""
    mask = 1 << 31
    product = 0
    while True:
        if a & mask:
            product ^= b
            if a & (mask - 1) == 0:
                return product
        mask >>= 1
        b = (b >> 1) ^ _POLYNOMIAL if b & 1 else b >> 1


_X_POWERS = [1 << 30]  # x^(2^k) for k = 0..31; 1 << 30 is x^1 in reflected order
for _ in range(31):
    _X_POWERS.append(_multiply(_X_POWERS[-1], _X_POWERS[-1]))


def _x_to_8n(count: int) -> int:
    """x^(8 * count) modulo the polynomial (zlib's x2nmodp(count, 3))."""
    power, k = 1 << 31, 3  # 1 << 31 is x^0
    while count:
        if count & 1:
            power = _multiply(_X_POWERS[k & 31], power)
        count >>= 1
        k += 1
    return power


def crc32_combine(first_crc: int, second_crc: int, second_length: int) -> int:
    """The CRC-32 of A + B from crc32(A), crc32(B) and len(B)."""
    return _multiply(_x_to_8n(second_length), first_crc) ^ second_crc


class ParallelCrc32:
    """Start hashing buffers on a thread pool now; collect their CRC-32s later."""

    def __init__(self, pool: concurrent.futures.Executor, buffers: Sequence[memoryview]) -> None:
        self._pieces = [
            [(pool.submit(crc32, buffer[start:start + PIECE]),
              min(PIECE, buffer.nbytes - start)) for start in range(0, buffer.nbytes, PIECE)]
            for buffer in buffers
        ]

    def results(self) -> List[int]:
        crcs = []
        for pieces in self._pieces:
            crc = 0
            for future, length in pieces:
                crc = crc32_combine(crc, future.result(), length)
            crcs.append(crc)
        return crcs
