"""Walks over a loaded object graph that no hostile file can crash, hang or blow up.

Every walk is iterative (no Python recursion, so no RecursionError and no C-stack overflow),
cycle-safe, and visits each object once however often it is shared: a 1 KB pickle can share one
list 60 levels deep (2**60 paths), but it has only a few hundred objects.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Dict, Iterable, Iterator, List, Tuple

from pickle_io.errors import CheckpointError
from pickle_io.limits import LIMITS

CONTAINER_TYPES = frozenset((dict, collections.OrderedDict, list, tuple, set, frozenset))


def children(node: Any) -> Iterable[Any]:
    """What a container holds: items, dict keys and values, and an OrderedDict's attributes
    (a state dict's `_metadata`). dict methods are called unbound, so a pickle that set an
    attribute named `items` cannot redirect them."""
    kind = type(node)
    if kind is dict:
        return _chain(dict.keys(node), dict.values(node))
    if kind is collections.OrderedDict:
        attributes = node.__dict__
        if attributes:
            return _chain(dict.keys(node), dict.values(node), attributes.values())
        return _chain(dict.keys(node), dict.values(node))
    return node


def _chain(*parts: Iterable[Any]) -> Iterator[Any]:
    for part in parts:
        yield from part


def check_depth(root: Any, filename: str, special: Tuple[type, ...] = ()) -> bool:
    """Raise CheckpointError when containers nest deeper than `LIMITS.max_depth` (the height of
    the object graph, cycles not counted); return whether any object of a `special` type occurs."""
    kind = type(root)
    if kind not in CONTAINER_TYPES:
        return kind in special
    limit = LIMITS.max_depth
    heights: Dict[int, int] = {}
    found = False
    stack: List[List[Any]] = [[root, iter(children(root)), 0]]
    on_path = {id(root)}
    while stack:
        frame = stack[-1]
        for child in frame[1]:
            kind = type(child)
            if kind in CONTAINER_TYPES:
                height = heights.get(id(child))
                if height is None:
                    if id(child) in on_path:
                        continue  # a cycle
                    if len(stack) >= limit:
                        raise too_deep(filename)
                    stack.append([child, iter(children(child)), 0])
                    on_path.add(id(child))
                    break
                if height > frame[2]:
                    frame[2] = height
            elif kind in special:
                found = True
        else:
            stack.pop()
            on_path.discard(id(frame[0]))
            height = frame[2] + 1
            if height > limit:
                raise too_deep(filename)
            heights[id(frame[0])] = height
            if stack and height > stack[-1][2]:
                stack[-1][2] = height
    return found


def too_deep(filename: str) -> CheckpointError:
    return CheckpointError(f"{filename}: containers nest deeper than {LIMITS.max_depth} levels "
                           "(pickle_io.LIMITS.max_depth)")


def convert(root: Any, replace: Callable[[Any], Any], special: Tuple[type, ...],
            filename: str) -> Any:
    """A copy of `root` with every object of a `special` type replaced by `replace(obj)`.

    Structure is kept: a part reached twice is copied once and shared, cycles through lists and
    dicts stay cycles, and an OrderedDict's attributes are copied too."""
    copies: Dict[int, Any] = {}

    def copied(item: Any) -> Any:
        kind = type(item)
        if kind in CONTAINER_TYPES:
            return copies[id(item)]
        if kind in special:
            known = copies.get(id(item))
            if known is None:
                known = copies[id(item)] = replace(item)
            return known
        return item

    stack: List[Tuple[Any, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        kind = type(node)
        if kind not in CONTAINER_TYPES:
            continue
        key = id(node)
        if not ready:
            if key in copies:
                continue
            if kind in (list, dict, collections.OrderedDict):
                copies[key] = kind()  # before its items: a cycle back to it finds it
            stack.append((node, True))
            stack.extend((child, False) for child in children(node)
                         if type(child) in CONTAINER_TYPES and id(child) not in copies)
            continue
        try:
            if kind is list:
                copies[key].extend(map(copied, node))
            elif kind is dict or kind is collections.OrderedDict:
                result = copies[key]
                for name, value in dict.items(node):
                    result[copied(name)] = copied(value)
                if kind is collections.OrderedDict and node.__dict__:
                    vars(result).update((name, copied(value)) for name, value in node.__dict__.items())
            elif key not in copies:  # tuple, set, frozenset
                copies[key] = kind(map(copied, node))
        except TypeError as error:  # a tensor where a dict key or set member must be hashable
            raise CheckpointError(f"{filename}: an array used as a dict key or set member "
                                  f"({error})") from None
    return copied(root)
