"""Per-game profiles: what a user taught the scene model for one game, in one file.

A profile is saved under the user data folder (``platformdirs``: ``~/.local/share/moodscore/
profiles/<game>.profile`` on Linux; ``XDG_DATA_HOME`` moves it) each time a teaching batch is
trained or undone, and loaded at start by ``--game NAME`` or ``[game] profile``. It holds every
taught batch (scene name, window features, the general model's reading of each, when), the
trained head and its held-back figures, and the hash of the general scene model it was made on:
features of another model mean nothing to the head, so a profile made on another model is
refused with a clear error. ``moodscore profile export/import`` and ``GET /api/profile`` move
the one file between machines, so streamers can share a profile for a game.

The file is a plain dict of strings, numbers and tensors (``torch.save``; read with
``weights_only=True``, so a shared file cannot run code).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError

FORMAT = "moodscore-game-profile"
VERSION = 1
SUFFIX = ".profile"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,63}$")


class ProfileError(ConfigError):
    """A profile cannot be used: a bad name, an unreadable file, or another scene model's."""


def profiles_dir() -> Path:
    """Where profiles live: ``<user data dir>/profiles``."""
    import platformdirs

    return Path(platformdirs.user_data_dir("moodscore", appauthor=False)) / "profiles"


def check_name(name: str) -> str:
    """A game name usable as a file name (letters, digits, space, ``_.+-``; 1-64 characters).

    Raises
    ------
    ProfileError
        It is not.
    """
    if not _NAME_RE.match(name) or name.endswith("."):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ProfileError(
            f"game name {shown!r} cannot name a profile; use letters, digits, space and _.+- "
            "(at most 64)"
        )
    return name


def profile_path(name: str, folder: Path | None = None) -> Path:
    """The file of the profile of game ``name``."""
    return (folder or profiles_dir()) / f"{check_name(name)}{SUFFIX}"


def model_hash(path: Path) -> str:
    """The first 16 hex digits of the scene model file's SHA-256 (``"missing"`` when absent)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "missing"


def to_bytes(data: Mapping[str, Any]) -> bytes:
    """A profile dict as the file's bytes."""
    import torch

    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **data}, buffer)
    return buffer.getvalue()


def from_bytes(raw: bytes, *, expect_hash: str | None, where: str) -> dict[str, Any]:
    """The profile dict in ``raw``, checked; ``where`` names it in errors.

    Raises
    ------
    ProfileError
        Not a profile, a newer version, or made on another scene model than ``expect_hash``.
    """
    import torch

    try:
        data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not one of its own
        raise ProfileError(f"{where} is not a moodscore game profile ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProfileError(f"{where} is not a moodscore game profile")
    if int(data.get("version", 0)) > VERSION:
        raise ProfileError(f"{where} was written by a newer moodscore; upgrade to read it")
    made_on = str(data.get("model_hash", ""))
    if expect_hash is not None and made_on != expect_hash:
        raise ProfileError(
            f"{where} was taught on scene model {made_on}, but this run uses {expect_hash}; "
            "use the scene model it was made on ([game] model) or teach this game again"
        )
    return data


def save(path: Path, data: Mapping[str, Any]) -> None:
    """Write a profile atomically (a crash leaves the old file whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(to_bytes(data))
    os.replace(partial, path)


def load(path: Path, *, expect_hash: str | None) -> dict[str, Any]:
    """Read a profile file (see :func:`from_bytes`).

    Raises
    ------
    ProfileError
        Unreadable, not a profile, or another model's.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path} ({exc.strerror or exc})") from exc
    return from_bytes(raw, expect_hash=expect_hash, where=str(path))


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """One saved profile, as ``doctor``, ``profile list`` and the panel show it."""

    game: str
    path: Path
    seconds: dict[str, float]
    adapted: bool
    model_hash: str

    def describe(self) -> str:
        taught = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(self.seconds.items())) or "empty"
        head = "adapted head in use" if self.adapted else "general model in use"
        return f"{self.game}: {taught}; {head} (scene model {self.model_hash})"


def summarise(data: Mapping[str, Any], path: Path) -> ProfileSummary:
    """The summary of a loaded profile dict."""
    seconds: dict[str, float] = {}
    for batch in data.get("batches", []):
        seconds[str(batch["scene"])] = seconds.get(str(batch["scene"]), 0.0) + float(
            batch["seconds"]
        )
    return ProfileSummary(
        game=str(data.get("game", path.stem)),
        path=path,
        seconds=seconds,
        adapted=bool(data.get("takes_over")) and data.get("head") is not None,
        model_hash=str(data.get("model_hash", "")),
    )


def list_profiles(folder: Path | None = None) -> list[ProfileSummary]:
    """Every readable profile in ``folder`` (default: :func:`profiles_dir`), by game name."""
    where = folder or profiles_dir()
    found = []
    for path in sorted(where.glob(f"*{SUFFIX}")):
        try:
            found.append(summarise(load(path, expect_hash=None), path))
        except ProfileError:
            continue
    return found


def listing(
    folder: Path | None, *, current: ProfileSummary | None, model_hash: str
) -> list[dict[str, Any]]:
    """Every saved profile in ``folder`` (``current``, this run's, as it stands) as the panel
    lists them: game, seconds per scene, whether a taught head reads, whether it is this run's
    (``current``) and whether this run's scene model can use it (``usable``)."""
    found = {s.game: s for s in list_profiles(folder)}
    if current is not None:
        found[current.game] = current
    return [
        {
            "game": s.game,
            "seconds": {k: round(v, 1) for k, v in sorted(s.seconds.items())},
            "adapted": s.adapted,
            "current": current is not None and s.game == current.game,
            "usable": s.model_hash == model_hash,
        }
        for s in sorted(found.values(), key=lambda s: s.game.lower())
    ]


def read_bytes(game: str, folder: Path | None = None) -> bytes:
    """Game ``game``'s saved profile as one file's bytes.

    Raises
    ------
    ProfileError
        A bad name, no such profile, or not a profile.
    """
    path = profile_path(check_name(game), folder)
    if not path.exists():
        raise ProfileError(f"no profile for game {game!r}; the panel lists those taught")
    return to_bytes(load(path, expect_hash=None))


def pick(seen: str, mapping: Mapping[str, str], known: list[str]) -> str | None:
    """The profile an OBS scene name or a window title ``seen`` names (``[game] auto_profile``):
    a ``mapping`` key it equals or contains, else a ``known`` profile's name it equals or
    contains (the longest such name), case ignored; None: none (keep the profile in use)."""
    text = seen.strip().casefold()
    if not text:
        return None
    for candidates in (list(mapping), known):
        found = [name for name in candidates if name.strip() and name.casefold() in text]
        if found:
            best = max(found, key=lambda name: (name.casefold() == text, len(name)))
            return mapping.get(best, best) if candidates is not known else best
    return None


def import_file(
    source: Path, *, name: str | None, expect_hash: str, folder: Path | None = None
) -> Path:
    """Copy an exported profile into the profiles folder (as game ``name``, default the game
    it was made for); its new path.

    Raises
    ------
    ProfileError
        Not a profile, or made on another scene model.
    """
    data = load(source, expect_hash=expect_hash)
    game = check_name(name or str(data.get("game", source.stem)))
    data["game"] = game
    target = profile_path(game, folder)
    save(target, data)
    return target
