"""The training commands: ``moodscore train-melody`` and ``moodscore train-scene``.

CLI-facing glue around the pure training loops in :mod:`models.melody_training` and
:mod:`models.scene_training`: reading data from folders of MIDI files or clips, splitting it,
and writing the weights with their metrics, reports and plots.

- :mod:`daemon.training.melody`: the melody LSTM, from the folk-tune dataset or your MIDI files;
- :mod:`daemon.training.scene`: a scene model for your own game, from folders of clips.

Nothing here imports the CLI; ``tools/train_melody.py`` runs the CLI's ``train-melody`` itself.
"""

from __future__ import annotations

from daemon.training.melody import TrainRequest, metrics_path_for, train_melody
from daemon.training.scene import TrainReport, train_scene

__all__ = ["TrainReport", "TrainRequest", "metrics_path_for", "train_melody", "train_scene"]
