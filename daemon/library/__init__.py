"""The music library: your own tracks, scanned into an index, recommended per mood, scene or
video, played in the library mode of ``run``/``render``, and used to prime the melody LSTM.

- :mod:`daemon.library.features`: what a track is (tempo, key, segment, valence/arousal);
- :mod:`daemon.library.scan`: folders into the index, only what changed;
- :mod:`daemon.library.index`: the SQLite index;
- :mod:`daemon.library.recommend`: targets, the EMD distance, variety;
- :mod:`daemon.library.live`: the library mode (choosing per bar, playing through pyo);
- :mod:`daemon.library.seed`: ``--seed-track``;
- :mod:`daemon.library.commands`: the command line; :mod:`daemon.bench.library`: the figures.
"""
