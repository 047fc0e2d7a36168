"""``python -m moodscore``: the same as the ``moodscore`` command (the code lives in ``daemon``)."""

from daemon import __version__

__all__ = ["__version__"]
