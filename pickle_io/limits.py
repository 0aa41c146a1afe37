"""The bounds pickle_io puts on what a file can make it do, and how to raise them.

A hostile file must not crash, hang or exhaust the reader, so work and memory are bounded by what
the file itself can justify. Real checkpoints stay far inside these bounds; raise one only for a
file you trust, for example `pickle_io.LIMITS.max_depth = 5000`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Limits:
    # Containers nested inside each other in the loaded object (Python's own pickle cannot
    # write much deeper than its recursion limit of 1000; a 1M-deep tuple crashes hash()).
    max_depth: int = 1000
    # A DEFLATED zip record may inflate to at most this many times its compressed size
    # (DEFLATE's own maximum is about 1032; real pickles and weights compress 1-20x).
    max_inflate_ratio: int = 100
    # A pickle record (data.pkl) may inflate to at most this many bytes.
    max_pickle_bytes: int = 2**30
    # Keys of one dict (or members of one set) that share one hash value: colliding keys make
    # every insertion scan all the others (100k crafted int keys take minutes).
    max_equal_hashes: int = 64


LIMITS = Limits()
