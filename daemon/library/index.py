"""The library index: one SQLite file holding every scanned track's analysis.

Rows are keyed by the file's absolute path and remember its modification time (ns) and size, so
a re-scan analyses only files that are new or changed. Files that could not be read are kept in
their own table with the reason, so an unchanged broken file is not retried on every scan (it is
retried once it changes). The features are one JSON column (see
:func:`daemon.library.features.features_to_json`); a few scalars are columns of their own for
people who query the file with ``sqlite3``.

The default location is ``$XDG_DATA_HOME/moodscore/library.sqlite`` (``~/.local/share/...``);
``library.index`` in the configuration moves it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from daemon.errors import ConfigError
from daemon.library.features import (
    FEATURES_VERSION,
    TrackFeatures,
    features_from_json,
    features_to_json,
)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    path TEXT PRIMARY KEY,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    duration REAL NOT NULL,
    tempo REAL NOT NULL,
    valence REAL NOT NULL,
    arousal REAL NOT NULL,
    features TEXT NOT NULL,
    analysed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    path TEXT PRIMARY KEY,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    error TEXT NOT NULL
);
"""


def default_index_path() -> Path:
    """``$XDG_DATA_HOME/moodscore/library.sqlite``, ``~/.local/share/moodscore/...`` without it."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "moodscore" / "library.sqlite"


def index_path(setting: str) -> Path:
    """The index file ``library.index`` names (empty: :func:`default_index_path`)."""
    return Path(setting).expanduser() if setting else default_index_path()


@dataclass(frozen=True, slots=True)
class Track:
    """One indexed track: its file, what the file was when analysed, and the analysis."""

    path: Path
    mtime_ns: int
    size: int
    features: TrackFeatures

    @property
    def title(self) -> str:
        """The file name without its suffix."""
        return self.path.stem

    @property
    def playable(self) -> bool:
        """True for audio files (the library mode plays those; MIDI files have no sound)."""
        return self.features.kind == "audio"


class LibraryIndex:
    """An open index file (created on first use). Use as a context manager, or :meth:`close`.

    Parameters
    ----------
    path : the SQLite file; its folder is created when missing.

    Raises
    ------
    ConfigError : the file cannot be created or is not a moodscore library index.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the library index {path} ({exc}); pass --index PATH or set "
                "library.index to a writable file"
            ) from exc
        try:
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                self._db.commit()
            elif row[0] != str(SCHEMA_VERSION):
                raise ConfigError(
                    f"{path} is a library index of another version ({row[0]}); delete it and "
                    "scan again"
                )
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ConfigError(
                f"{path} is not a moodscore library index ({exc}); pass another --index"
            ) from exc

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> LibraryIndex:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------

    def known(self) -> dict[str, tuple[int, int, bool]]:
        """Every file the index has seen: path -> (mtime_ns, size, ok). Tracks analysed by an
        older feature version are left out (they are analysed again)."""
        found: dict[str, tuple[int, int, bool]] = {}
        for path, mtime_ns, size in self._db.execute("SELECT path, mtime_ns, size FROM failures"):
            found[path] = (mtime_ns, size, False)
        for path, mtime_ns, size in self._db.execute(
            "SELECT path, mtime_ns, size FROM tracks WHERE version = ?", (FEATURES_VERSION,)
        ):
            found[path] = (mtime_ns, size, True)
        return found

    def tracks(self, *, under: Path | None = None) -> list[Track]:
        """The analysed tracks (under the folder ``under`` when given), by path."""
        return list(self._iter_tracks(under))

    def _iter_tracks(self, under: Path | None) -> Iterator[Track]:
        prefix = None if under is None else str(under.resolve()).rstrip(os.sep) + os.sep
        for path, mtime_ns, size, features in self._db.execute(
            "SELECT path, mtime_ns, size, features FROM tracks WHERE version = ? ORDER BY path",
            (FEATURES_VERSION,),
        ):
            if prefix is not None and not path.startswith(prefix):
                continue
            yield Track(Path(path), mtime_ns, size, features_from_json(json.loads(features)))

    def failures(self, *, under: Path | None = None) -> list[tuple[Path, str]]:
        """Files that could not be analysed, with the reason."""
        prefix = None if under is None else str(under.resolve()).rstrip(os.sep) + os.sep
        return [
            (Path(path), error)
            for path, error in self._db.execute("SELECT path, error FROM failures ORDER BY path")
            if prefix is None or path.startswith(prefix)
        ]

    def __len__(self) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM tracks WHERE version = ?", (FEATURES_VERSION,)
        ).fetchone()
        return int(row[0])

    # -- writing ---------------------------------------------------------------------------

    def put(self, path: Path, *, mtime_ns: int, size: int, features: TrackFeatures) -> None:
        """Store (or replace) a track's analysis; commits."""
        import time

        key = str(path)
        with self._db:
            self._db.execute("DELETE FROM failures WHERE path = ?", (key,))
            self._db.execute(
                "INSERT OR REPLACE INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    mtime_ns,
                    size,
                    FEATURES_VERSION,
                    features.kind,
                    features.duration,
                    features.tempo,
                    features.valence,
                    features.arousal,
                    json.dumps(features_to_json(features), separators=(",", ":")),
                    time.time(),
                ),
            )

    def put_failure(self, path: Path, *, mtime_ns: int, size: int, error: str) -> None:
        """Remember that ``path`` (as it is now) could not be analysed; commits."""
        key = str(path)
        with self._db:
            self._db.execute("DELETE FROM tracks WHERE path = ?", (key,))
            self._db.execute(
                "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)",
                (key, mtime_ns, size, error),
            )

    def remove(self, paths: Iterable[str]) -> None:
        """Forget these files (they are gone); commits."""
        keys = [(p,) for p in paths]
        with self._db:
            self._db.executemany("DELETE FROM tracks WHERE path = ?", keys)
            self._db.executemany("DELETE FROM failures WHERE path = ?", keys)
