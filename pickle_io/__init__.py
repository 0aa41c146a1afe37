"""pickle_io: a safe, zero-copy PyTorch checkpoint reader and writer that never imports torch.

    load(path, *, mmap=True)          the object in a torch checkpoint (or plain pickle), tensors
                                      as numpy arrays
    open(path)                        a lazy mapping over a state dict (keys, info, [name])
    save(obj, path, *, format="zip")  write a checkpoint torch.load(weights_only=True) reads
    inspect(path)                     the tensor table of a checkpoint, reading no tensor data
    load_sharded(dir_or_index)        a Hugging Face checkpoint directory or index as {name: array}
    save_sharded(state_dict, dir)     write one as Hugging Face does (bin or safetensors shards)

See docs/pickle_io.md.
"""

from pickle_io.checkpoint import (
    Checkpoint,
    CheckpointSummary,
    TensorSummary,
    inspect,
    load,
    open,
    save,
)
from pickle_io.errors import (CheckpointError, PickleIOError, UnsafePickleError,
                              UnsupportedTensorError)
from pickle_io.limits import LIMITS, Limits
from pickle_io.sharded import load_sharded, save_sharded
from pickle_io.tensors import TensorInfo
from pickle_io.unpickler import MetaTensor

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointSummary",
    "LIMITS",
    "Limits",
    "MetaTensor",
    "PickleIOError",
    "TensorInfo",
    "TensorSummary",
    "UnsafePickleError",
    "UnsupportedTensorError",
    "inspect",
    "load",
    "load_sharded",
    "open",
    "save",
    "save_sharded",
]
