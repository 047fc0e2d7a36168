"""moodscore: a live soundtrack daemon that follows faces or game video."""

__version__ = "0.1.0"
