"""Teaching the game mode one game: the adaptation on a held-out game, undo, custom scenes,
profiles.

The accuracy figure uses Red Eclipse (``models/footage/val/redeclipse``), a game the general
scene model never saw. It is taught through the web API as a user teaches from a recording
(``POST /api/teach {"scene", "file", "start", "seconds"}``, read as fast as the CPU allows), a
minute per scene; the other minutes are read by :func:`models.scene.clip_windows` (the same
numbers as the live reader, in one batch) and named by the taught head. (The live path is
tested with a few seconds in ``tests/test_teach_live.py``.)
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.analysis import profiles
from daemon.analysis.teach import Teacher, TeachError
from daemon.cli import main
from daemon.config import load_config
from daemon.control.hub import ControlHub
from daemon.web.server import WebServer
from models.scene import DEFAULT_WEIGHTS, LoadedScene, clip_windows, load_checkpoint
from models.scene_adapt import adapt, balanced_accuracy, split_by_time
from models.scene_data import Clip, load_footage

FOOTAGE = Path(__file__).resolve().parent.parent / "models" / "footage" / "val" / "redeclipse"
CLIPS = ("match_bath_800x600", "match_bloodlust_1024x576")
WINDOW_S = 0.5
TAUGHT_WINDOWS = 60  # per class and clip: 30 s each, 60 s per class in all


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(seed=440)


@pytest.fixture(scope="module")
def general() -> LoadedScene:
    return load_checkpoint(DEFAULT_WEIGHTS)


def _window_labels(clip: Clip) -> list[str | None]:
    """Each 0.5 s window's scene (4 frames at 8 fps; None where it changes or is unlabelled)."""
    labels: list[str | None] = []
    for k in range((len(clip) + 3) // 4):
        first, last = 4 * k, min(4 * k + 3, len(clip) - 1)
        label = int(clip.labels[last])
        labels.append(clip.classes[label] if label >= 0 and clip.labels[first] == label else None)
    return labels


async def test_a_minute_per_scene_taught_through_the_api_reads_red_eclipse(
    general: LoadedScene,
) -> None:
    """The user marks stretches of their recordings (``POST /api/teach`` with a file): a
    minute per scene, then the head reads the same game's other minutes."""
    clips = [load_footage(FOOTAGE / f"{name}.mp4") for name in CLIPS]
    config = load_config(use_user_file=False).replace(
        "web", enabled=True, host="127.0.0.1", port=0, token="sesame"
    )
    hub = ControlHub()
    teacher = Teacher(model_hash="test", worker="thread", model_path=DEFAULT_WEIGHTS)
    hub.teacher = teacher
    server = WebServer(hub=hub, web_config=config.web, visuals=config.visuals)
    await server.start()
    api = server.panel_url.split("/panel")[0] + "/api/teach"
    try:
        # A file path without the token is refused (it would open a file on this machine).
        body = {"scene": "menu", "file": str(FOOTAGE / f"{CLIPS[0]}.mp4"), "seconds": 1}
        status, answer = await asyncio.to_thread(_post, api, body, None)
        assert status == 403 and "needs the token" in answer["message"]
        # A file that is no video is one line, 400 (the labels beside the footage).
        body = {"scene": "menu", "file": str(FOOTAGE / f"{CLIPS[0]}.json"), "seconds": 1}
        status, answer = await asyncio.to_thread(_post, api, body, "sesame")
        assert status == 400 and "does not decode as video" in answer["message"], answer
        evaluation: list[tuple[np.ndarray, str, str]] = []
        taught = {"combat": 0.0, "menu": 0.0}
        for name, clip in zip(CLIPS, clips, strict=True):
            rows = _window_labels(clip)
            counts = {"combat": 0, "menu": 0}
            last_taught = 0
            k = 0
            while k < len(rows):
                label = rows[k]
                if label is None or counts[label] >= TAUGHT_WINDOWS:
                    k += 1
                    continue
                # The user marks this stretch of the recording (as long as the scene lasts).
                run = 0
                while k + run < len(rows) and rows[k + run] == label:
                    run += 1
                run = min(run, TAUGHT_WINDOWS - counts[label])
                body = {
                    "scene": label,
                    "file": str(FOOTAGE / f"{name}.mp4"),
                    "start": k * WINDOW_S,
                    "seconds": run * WINDOW_S,
                }
                status, answer = await asyncio.to_thread(_post, api, body, "sesame")
                assert status == 200 and answer["message"].startswith(
                    f"taught {run * WINDOW_S:.1f} s of {label} from {name}.mp4"
                ), answer
                counts[label] += run
                taught[label] += run * WINDOW_S
                k += run
                last_taught = k
            # The other minutes, read as the live game mode reads them (from a second before).
            read = clip_windows(general, clip.frames[4 * last_taught - 8 :])[2:]
            assert len(read) == len(rows) - last_taught
            evaluation += [
                (features, label_, reading.scene)
                for (reading, features), label_ in zip(read, rows[last_taught:], strict=True)
                if label_ is not None
            ]
        assert taught == {"combat": 60.0, "menu": 60.0}
        assert await asyncio.to_thread(teacher.wait_idle, 60)
        assert teacher.promote()
    finally:
        await server.aclose()
        teacher.close()
    state = teacher.snapshot()
    assert state["adapted"] and state["seconds"] == {"combat": 60.0, "menu": 60.0}
    truth = np.array([n for _, n, _ in evaluation])
    adapted = np.array(
        [
            max(p, key=p.__getitem__)
            for p in (teacher.head_probs(f) for f, _, _ in evaluation)
            if p is not None
        ]
    )
    read_general = np.array([g for _, _, g in evaluation])
    adapted_acc = float(np.mean(adapted == truth))
    general_acc = float(np.mean(read_general == truth))
    print(
        f"\nRed Eclipse, {len(truth)} windows of other minutes ({np.sum(truth == 'menu')} menu): "
        f"adapted {adapted_acc:.3f} (balanced {balanced_accuracy(truth, adapted):.3f}), general "
        f"{general_acc:.3f} (balanced {balanced_accuracy(truth, read_general):.3f}); trained in "
        f"{state['train_seconds']:.2f} s"
    )
    # Measured 0.950 (balanced 0.838) against 0.295 (balanced 0.191): the 0.9.
    assert adapted_acc >= 0.9 and balanced_accuracy(truth, adapted) >= 0.75
    assert general_acc < adapted_acc - 0.3
    assert state["train_seconds"] < 10.0


def _post(url: str, body: dict[str, object], token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_held_back_examples_are_the_latest_taught_of_each_class() -> None:
    labels = ["combat"] * 8 + ["menu"] * 4 + ["combat"] * 4
    held = split_by_time(labels)
    assert list(np.flatnonzero(held)) == [11, 13, 14, 15]  # menu's last, combat's last 3


def test_the_head_takes_over_only_when_it_beats_the_general_model(
    rng: np.random.Generator,
) -> None:
    x = np.concatenate([rng.normal(0, 1, (40, 6)), rng.normal(3, 1, (40, 6))]).astype(np.float32)
    labels = ["combat"] * 40 + ["boss"] * 40
    better = adapt(x, labels, ["combat"] * 80)
    assert better.takes_over and better.adapted_accuracy == 1.0 and better.general_accuracy == 0.5
    perfect = adapt(x, labels, labels)
    assert not perfect.takes_over  # a tie keeps the general model
    one = adapt(x[:40], labels[:40], labels[:40])
    assert one.head is None and not one.takes_over


async def test_undo_drops_the_last_batch_and_a_custom_scene_is_read(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    teacher = Teacher(model_hash="abc", game="Test Game", folder=tmp_path, worker="thread")
    with pytest.raises(TeachError):
        teacher.undo()
    for scene, mean in (("exploration", 0.0), ("boss", 4.0), ("menu", -4.0)):
        teacher.teach(scene, 10.0)
        for _ in range(20):
            teacher.observe(rng.normal(mean, 1.0, 8).astype(np.float32), "exploration", 0.5)
    assert teacher.wait_idle(30) and teacher.promote()
    assert teacher.snapshot()["seconds"] == {"exploration": 10.0, "boss": 10.0, "menu": 10.0}
    probs = teacher.head_probs(np.full(8, 4.0, np.float32))
    assert probs is not None and max(probs, key=probs.__getitem__) == "boss"
    assert teacher.undo() == "10.0 s of menu"
    assert teacher.wait_idle(30) and teacher.promote()
    probs = teacher.head_probs(np.full(8, -4.0, np.float32))
    assert probs is not None and set(probs) == {"exploration", "boss"}
    teacher.undo()
    assert teacher.wait_idle(30) and teacher.promote()
    assert teacher.head_probs(np.zeros(8, np.float32)) is None  # one scene: the general model
    assert teacher.snapshot()["adapted"] is False

    # The profile was saved at each change; a teacher of the same game reads it back.
    again = Teacher(model_hash="abc", game="Test Game", folder=tmp_path, worker="thread")
    assert again.snapshot()["seconds"] == {"exploration": 10.0}
    [summary] = profiles.list_profiles(tmp_path)
    assert summary.game == "Test Game" and summary.seconds == {"exploration": 10.0}
    with pytest.raises(profiles.ProfileError, match="taught on scene model abc, but this run uses"):
        Teacher(model_hash="other", game="Test Game", folder=tmp_path, worker="thread")

    # Another game's profile: switched to (a new one, empty), listed with the saved one,
    # each exportable; switching back reads the first again.
    hub = ControlHub()
    hub.teacher = again
    switched = await hub.execute("game", '{"game": "Other Game"}')
    assert switched.ok
    assert (
        switched.message == "game profile Other Game: empty; general model in use (scene model abc)"
    )
    assert again.snapshot()["game"] == "Other Game" and again.snapshot()["seconds"] == {}
    assert [(p["game"], p["current"], p["seconds"]) for p in again.profiles()] == [
        ("Other Game", True, {}),
        ("Test Game", False, {"exploration": 10.0}),
    ]
    exported = profiles.from_bytes(again.profile_bytes("Test Game"), expect_hash="abc", where="x")
    assert exported["game"] == "Test Game"
    with pytest.raises(profiles.ProfileError, match="no profile for game 'Nope'"):
        again.profile_bytes("Nope")
    assert (await hub.execute("game", "Test Game")).ok
    assert again.snapshot()["seconds"] == {"exploration": 10.0}
    refused = await hub.execute("game", "../etc")
    assert not refused.ok and "game" in refused.message


def test_the_command_line_teaches_a_profile_from_a_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    clip = FOOTAGE / f"{CLIPS[0]}.mp4"
    args = ["teach", "--game", "Red Eclipse", "--scene", "menu", str(clip), "--start", "1"]
    assert main([*args, "--seconds", "3"]) == 0
    assert "taught 3.0 s of menu from match_bath_800x600.mp4 at 1 s" in capsys.readouterr().out
    [summary] = profiles.list_profiles()
    assert summary.game == "Red Eclipse" and summary.seconds == {"menu": 3.0}
    # Bad input is one line: a scene with no preset, a missing file.
    assert main(["teach", "--game", "Red Eclipse", "--scene", "shop", str(clip)]) == 2
    assert "no scene preset named 'shop'" in capsys.readouterr().err
    assert main(["teach", "--game", "Red Eclipse", "--scene", "menu", "nope.mp4"]) == 2
    assert "teach: no file nope.mp4" in capsys.readouterr().err


def test_the_obs_scene_or_window_title_picks_a_profile() -> None:
    known = ["redeclipse", "Flare"]
    mapping = {"Red Eclipse": "redeclipse", "Boss Rush": "Flare"}
    assert profiles.pick("Red Eclipse 2.0.0 (OpenGL)", mapping, known) == "redeclipse"
    assert profiles.pick("boss rush - stream", mapping, known) == "Flare"
    assert profiles.pick("Gameplay: FLARE", {}, known) == "Flare"  # a saved profile's name
    assert profiles.pick("Just Chatting", mapping, known) is None
    assert profiles.pick("", mapping, known) is None
