"""Where a model runs: the ``models.device`` setting turned into a :class:`torch.device`.

One resolver for every model (affect, scene, melody) and every training command, so a wrong
setting reads the same wherever it is met.
"""

from __future__ import annotations

import re

import torch

from models.errors import ModelError

_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def resolve_device(name: str) -> torch.device:
    """The device a ``models.device`` setting names.

    Parameters
    ----------
    name : ``"auto"`` (the first CUDA GPU when torch sees one, else the CPU), ``"cpu"``,
        ``"cuda"`` (the current CUDA GPU) or ``"cuda:N"`` (GPU number N).

    Raises
    ------
    ModelError
        A CUDA device is named but torch sees no GPU (or not that many), or the name is none of
        the above; the message says which setting to use instead.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    index_match = _CUDA_INDEX.fullmatch(name)
    if name != "cuda" and index_match is None:
        raise ModelError(
            f'models.device = "{name}" is not a device; use "auto", "cpu", "cuda" or "cuda:N"'
        )
    if not torch.cuda.is_available():
        raise ModelError(
            f'models.device = "{name}" but torch sees no GPU (CPU build of torch?); '
            'use "auto" or "cpu"'
        )
    if index_match is not None:
        count = torch.cuda.device_count()
        if int(index_match.group(1)) >= count:
            raise ModelError(
                f'models.device = "{name}" but torch sees {count} GPU(s), cuda:0 to '
                f'cuda:{count - 1}; use one of those, "auto" or "cpu"'
            )
    return torch.device(name)


__all__ = ["resolve_device"]
