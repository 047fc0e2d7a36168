"""The music library: scanning real files, recommending by mood, scene and video, the library
mode of a render, and priming the melody LSTM with a seed track.

The library is made of music moodscore composes at known moods (``compose``'s own code path),
written as WAV, FLAC, OGG, MP3 and MIDI, once per test session.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile

from daemon.app import ComposeRequest, compose
from daemon.cli import main
from daemon.composer import Composer
from daemon.conductor import Conductor
from daemon.config import load_config
from daemon.errors import ModelError
from daemon.library.features import TrackFeatures, analyse_midi
from daemon.library.index import LibraryIndex, Track, default_index_path
from daemon.library.live import LibraryDirector, clock_bpm
from daemon.library.recommend import (
    arousal_for_bpm,
    bpm_for_arousal,
    diversity,
    emd,
    mood_target,
    nearest_by_tempo,
    plan_target,
    rank,
    recommend_set,
    scene_target,
    segment_target,
)
from daemon.library.scan import load_audio, scan
from daemon.library.seed import load_seed_phrase, prime_composer
from daemon.messages import Layer, Mode, Mood, Plan
from daemon.scenes import available_scenes, load_scene
from tests.clips import write_clip

VALENCES = (-0.6, 0.6)
AROUSALS = (-0.8, -0.4, 0.0, 0.4, 0.8)
SEEDS = (0, 1)
TRACK_S = 10.0
NEAR = 0.45  # a track "composed near" a mood: within this distance in the valence/arousal plane
OTHER_FORMATS = ("flac", "ogg", "mp3", "wav")


@dataclasses.dataclass(frozen=True)
class MusicLibrary:
    folder: Path
    index: Path
    moods: dict[str, tuple[float, float]]  # file name -> the mood it was composed at
    bpm: dict[str, float]  # file name -> the tempo it was composed at


def _name(valence: float, arousal: float, seed: int) -> str:
    return f"v{valence:+.1f}_a{arousal:+.1f}_s{seed}"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> MusicLibrary:
    """20 audio tracks (two per mood, five formats) and 10 MIDI files, plus a broken file and a
    text file, scanned into an index with the default two worker processes.

    With ``MOODSCORE_TEST_LIBRARY_CACHE=DIR`` (tools/mutation.sh sets it) the library is built
    in DIR once and reused by later runs: the mutation check runs these tests hundreds of times.
    """
    cache = os.environ.get("MOODSCORE_TEST_LIBRARY_CACHE")
    if cache:
        return _cached_library(Path(cache), tmp_path_factory)
    return _build_library(tmp_path_factory.mktemp("music"), tmp_path_factory)


def _cached_library(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> MusicLibrary:
    done = cache / "library.json"
    if not done.is_file():
        built = _build_library(cache / "music", tmp_path_factory, index=cache / "library.sqlite")
        document = {"moods": built.moods, "bpm": built.bpm}
        done.write_text(json.dumps(document))
    document = json.loads(done.read_text())
    return MusicLibrary(
        folder=cache / "music",
        index=cache / "library.sqlite",
        moods={name: (v, a) for name, (v, a) in document["moods"].items()},
        bpm=document["bpm"],
    )


def _build_library(
    folder: Path, tmp_path_factory: pytest.TempPathFactory, index: Path | None = None
) -> MusicLibrary:
    config = load_config(use_user_file=False)
    folder.mkdir(parents=True, exist_ok=True)
    scratch = tmp_path_factory.mktemp("scratch")
    moods: dict[str, tuple[float, float]] = {}
    bpm: dict[str, float] = {}
    number = 0
    for valence in VALENCES:
        for arousal in AROUSALS:
            conductor = Conductor(config=config.conductor, preset=load_scene("default"))
            conductor.observe(Mood(t_start=0.0, t_end=0.5, valence=valence, arousal=arousal))
            plan = conductor.plan_for_bar(0)
            bars = max(2, round(TRACK_S * plan.bpm / 240.0))
            for seed in SEEDS:
                stem = _name(valence, arousal, seed)
                wav = scratch / f"{stem}.wav"
                outputs = [wav] + ([folder / f"{stem}.mid"] if seed == 0 else [])
                compose(
                    config.replace("composer", seed=500 + 10 * number + seed),
                    ComposeRequest(
                        valence=valence, arousal=arousal, bars=bars, outputs=tuple(outputs)
                    ),
                )
                suffix = "wav" if seed == 0 else OTHER_FORMATS[number % len(OTHER_FORMATS)]
                audio, rate = soundfile.read(str(wav), dtype="float32")
                # Nested folders are part of a real library.
                target = folder / ("sub" if seed else "") / f"{stem}.{suffix}"
                target.parent.mkdir(exist_ok=True)
                soundfile.write(str(target), audio, rate)
                for written in (target, folder / f"{stem}.mid"):
                    moods[written.name] = (valence, arousal)
                    bpm[written.name] = plan.bpm
            number += 1
    (folder / "broken.mp3").write_bytes(b"ID3 this is not an mp3 at all" * 50)
    (folder / "notes.txt").write_text("not music")
    index = index or tmp_path_factory.mktemp("index") / "library.sqlite"
    with LibraryIndex(index) as db:
        report = scan(folder, db, workers=2)
    assert report.analysed == 30, report.failed
    return MusicLibrary(folder=folder, index=index, moods=moods, bpm=bpm)


@pytest.fixture(scope="module")
def tracks(library: MusicLibrary) -> list[Track]:
    with LibraryIndex(library.index) as db:
        return db.tracks()


# -- scan ------------------------------------------------------------------------------------


def test_scan_reads_every_format_and_skips_what_is_not_music(
    library: MusicLibrary, tracks: list[Track]
) -> None:
    suffixes = sorted({t.path.suffix for t in tracks})
    assert suffixes == [".flac", ".mid", ".mp3", ".ogg", ".wav"]
    assert sum(t.features.kind == "midi" for t in tracks) == 10
    with LibraryIndex(library.index) as db:
        failures = db.failures()
    assert [p.name for p, _ in failures] == ["broken.mp3"]
    assert "\n" not in failures[0][1] and failures[0][1]
    for track in tracks:
        f = track.features
        start, end = f.segment
        # The representative segment: inside the track, 12 s or the whole of a shorter track.
        assert 0 <= start < end <= f.duration + 1e-6
        assert end - start == pytest.approx(min(12.0, f.duration), abs=0.1)
        assert len(f.windows) >= 2 and all(-1 <= v <= 1 and -1 <= a <= 1 for v, a in f.windows)
        assert len(f.chroma_mean) == 12
        assert len(f.mfcc_mean) == (13 if f.kind == "audio" else 0)


def test_scan_hears_the_tempo_and_the_mode(library: MusicLibrary, tracks: list[Track]) -> None:
    audio = [t for t in tracks if t.features.kind == "audio"]
    on_tempo = [abs(t.features.tempo / library.bpm[t.path.name] - 1) < 0.04 for t in audio]
    assert np.mean(on_tempo) >= 0.75
    midi = [t for t in tracks if t.features.kind == "midi"]
    assert all(t.features.tempo == pytest.approx(library.bpm[t.path.name]) for t in midi)
    # Major tracks read as more pleasant than minor ones, on average (mode is the main cue).
    major = [t.features.valence for t in tracks if library.moods[t.path.name][0] > 0]
    minor = [t.features.valence for t in tracks if library.moods[t.path.name][0] < 0]
    assert np.mean(major) - np.mean(minor) > 0.4
    # And arousal rises with the arousal the music was composed at.
    by_arousal = [
        np.mean([t.features.arousal for t in tracks if library.moods[t.path.name][1] == a])
        for a in AROUSALS
    ]
    assert by_arousal == sorted(by_arousal)


def test_rescan_analyses_only_new_and_changed_files(library: MusicLibrary, tmp_path: Path) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    names = ["v+0.6_a-0.8_s0.wav", "v-0.6_a+0.8_s0.mid", "broken.mp3"]
    for name in names:
        shutil.copy2(library.folder / name, folder / name)
    index = tmp_path / "index.sqlite"
    with LibraryIndex(index) as db:
        first = scan(folder, db, workers=1)
        again = scan(folder, db, workers=1)
        assert (first.analysed, len(first.failed)) == (2, 1)
        assert (again.analysed, again.unchanged, again.failed_before) == (0, 2, 1)
        # A changed file is analysed again; a removed one leaves the index.
        shutil.copy2(library.folder / "v-0.6_a+0.8_s0.wav", folder / "v+0.6_a-0.8_s0.wav")
        (folder / "v-0.6_a+0.8_s0.mid").unlink()
        third = scan(folder, db, workers=1)
        assert (third.analysed, third.removed, third.unchanged) == (1, 1, 0)
        (changed,) = db.tracks()
        assert changed.features.arousal > 0.3  # now the intense track's analysis


def test_the_default_index_lives_in_the_users_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_index_path() == tmp_path / "moodscore" / "library.sqlite"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_index_path() == Path.home() / ".local/share/moodscore/library.sqlite"


def test_midi_features_come_from_the_notes(library: MusicLibrary) -> None:
    calm = analyse_midi(library.folder / "v-0.6_a-0.8_s0.mid")
    busy = analyse_midi(library.folder / "v-0.6_a+0.8_s0.mid")
    assert busy.onset_rate > 2 * calm.onset_rate
    assert busy.arousal > calm.arousal + 0.5
    assert calm.mfcc_mean == ()


# -- recommend -------------------------------------------------------------------------------


def test_mood_queries_return_tracks_composed_near_that_mood(
    library: MusicLibrary, tracks: list[Track]
) -> None:
    """The first track for a mood was composed in that mood's valence (major for pleasant,
    minor for unpleasant) and at the composed arousal nearest the query's, or the next one."""
    rng = np.random.default_rng(seed=440)
    queries = [(v, a) for v in VALENCES for a in AROUSALS]
    # Moods between the composed ones too, each with a composed mood near it.
    while len(queries) < 20:
        v, a = float(rng.uniform(-0.7, 0.7)), float(rng.uniform(-0.8, 0.8))
        if min(math.dist((v, a), m) for m in library.moods.values()) <= NEAR / 2:
            queries.append((v, a))
    steps = []
    for valence, arousal in queries:
        (first,) = rank(tracks, mood_target(valence, arousal), k=1)
        composed_valence, composed_arousal = library.moods[first.track.path.name]
        assert np.sign(composed_valence) == np.sign(valence), (valence, arousal, first)
        # How many steps of the 0.4 arousal grid the pick is from the grid point nearest the
        # query: 0 is the nearest composed arousal, 1 its neighbour.
        nearest = min(AROUSALS, key=lambda grid: abs(grid - arousal))
        steps.append(round(abs(composed_arousal - nearest) / 0.4))
    assert max(steps) <= 1, list(zip(queries, steps, strict=True))
    assert steps.count(0) >= len(queries) // 2, list(zip(queries, steps, strict=True))
    # At the composed moods themselves the two ends of the scale come back exactly.
    for valence in VALENCES:
        for arousal in (AROUSALS[0], AROUSALS[-1]):
            (first,) = rank(tracks, mood_target(valence, arousal), k=1)
            assert library.moods[first.track.path.name] == (valence, arousal)


def test_scene_presets_pick_tracks_of_their_character(
    library: MusicLibrary, tracks: list[Track]
) -> None:
    combat = rank(tracks, scene_target(load_scene("combat")), k=3)
    calm = rank(tracks, scene_target(load_scene("calm")), k=3)
    menu = rank(tracks, scene_target(load_scene("menu")), k=3)
    assert all(library.moods[m.track.path.name][1] > 0 for m in combat)
    assert all(library.moods[m.track.path.name][1] < 0 for m in calm)
    # Combat always plays E minor, the menu always A major: their tracks are in that mode.
    assert all(library.moods[m.track.path.name][0] < 0 for m in combat)
    assert all(library.moods[m.track.path.name][0] > 0 for m in menu)


def _scene_plans() -> list[Plan]:
    config = load_config(use_user_file=False)
    plans = []
    for name in available_scenes():
        for valence, arousal in ((-0.5, -0.6), (0.3, 0.0), (0.6, 0.7)):
            conductor = Conductor(config=config.conductor, preset=load_scene(name))
            conductor.observe(Mood(t_start=0.0, t_end=0.5, valence=valence, arousal=arousal))
            plans.append(conductor.plan_for_bar(0))
    return plans


def test_choices_for_a_set_of_scenes_are_more_varied_than_nearest_by_tempo(
    tracks: list[Track],
) -> None:
    targets = [plan_target(plan) for plan in _scene_plans()]
    ours = [matches[0].track.path for matches in recommend_set(tracks, targets, k=1)]
    by_tempo = [nearest_by_tempo(tracks, target).path for target in targets]
    ours_score = diversity(ours, len(tracks))
    tempo_score = diversity(by_tempo, len(tracks))
    assert ours_score < tempo_score
    # No track is chosen for more than three of the 18 scene/mood combinations.
    assert max(ours.count(p) for p in ours) <= 3


def test_diversity_is_the_seed_papers_measure() -> None:
    # J = 4 scenes over K = 4 tracks: all different scores 0; all the same 12.
    assert diversity(["a", "b", "c", "d"], 4) == 0
    assert diversity(["a", "a", "a", "a"], 4) == pytest.approx((4 - 1) ** 2 + 3 * 1)


def test_diversity_counts_tracks_never_chosen_and_needs_tracks() -> None:
    # J = 2 scenes over K = 4 tracks, two chosen once: 2 (1 - 0.5)^2 + 2 (0 - 0.5)^2 = 1.
    assert diversity(["a", "b"], 4) == pytest.approx(1.0)
    assert diversity(["a"], 1) == 0
    with pytest.raises(ValueError, match="no tracks"):
        diversity([], 0)


def test_the_tempo_scale_is_the_default_presets() -> None:
    """66 bpm is arousal -0.8 and 168 bpm +0.8 (README, "Distance"), clipped to [-1, 1]."""
    for bpm, arousal in ((66, -0.8), (117, 0.0), (168, 0.8), (0, -1.0), (400, 1.0)):
        assert arousal_for_bpm(bpm) == pytest.approx(arousal)
    for arousal, bpm in ((-0.8, 66), (0.0, 117), (0.8, 168), (-1.0, 66), (1.0, 168)):
        assert bpm_for_arousal(arousal) == pytest.approx(bpm)
    target = mood_target(0.6, 0.8)
    assert target.points == ((0.6, 0.8),) and target.tempo == pytest.approx(168)
    assert target.label == "valence +0.60, arousal +0.80"


def test_scene_targets_are_the_presets_tempo_range_at_its_mode() -> None:
    levels = (0.1, 0.3, 0.5, 0.7, 0.9)

    def scale(bpm: float) -> float:  # 66 bpm = -0.8 ... 168 bpm = +0.8
        return -0.8 + 1.6 * (bpm - 66) / 102

    menu = scene_target(load_scene("menu"))  # 92-108 bpm, A major always
    expected = [(0.5, scale(92 + level * 16)) for level in levels]
    assert np.ravel(menu.points).tolist() == pytest.approx(np.ravel(expected).tolist())
    assert menu.tempo == 100 and menu.label == "scene menu"
    combat = scene_target(load_scene("combat"))  # 120-176 bpm, E minor always
    assert [v for v, _ in combat.points] == [-0.5] * 5 and combat.tempo == 148
    calm = scene_target(load_scene("calm"))  # 60-96 bpm, the mode follows valence
    assert sorted({v for v, _ in calm.points}) == [-0.5, 0.5] and len(calm.points) == 10


def test_a_plans_target_leans_at_least_0_3_towards_its_mode() -> None:
    cases: list[tuple[Mode, float, float]] = [
        ("major", 0.1, 0.3), ("major", 0.7, 0.7), ("major", -0.4, 0.3),
        ("minor", 0.2, -0.3), ("minor", -0.6, -0.6),
    ]  # fmt: skip
    for mode, valence, expected in cases:
        plan = dataclasses.replace(_plan(0, valence, 117.0), mode=mode)
        target = plan_target(plan)
        ((point_valence, point_arousal),) = target.points
        assert point_valence == pytest.approx(expected), (mode, valence)
        assert point_arousal == pytest.approx(0.0)
        assert target.tempo == 117.0 and target.label == f"default at 117 bpm, {mode}"


def test_a_video_segment_is_at_most_sixteen_of_its_windows_evenly_spread() -> None:
    moods = [
        Mood(t_start=k * 0.5, t_end=k * 0.5 + 0.5, valence=k / 40, arousal=-0.8) for k in range(40)
    ]
    target = segment_target(moods, "scene 1")
    assert len(target.points) == 16
    assert target.points[0] == (0.0, -0.8) and target.points[-1] == (39 / 40, -0.8)
    assert target.label == "scene 1" and target.tempo == pytest.approx(66)
    assert len(segment_target(moods[:16], "short").points) == 16
    assert len(segment_target(moods[:3], "short").points) == 3
    with pytest.raises(ValueError, match="at least one window"):
        segment_target([], "empty")


def test_ranking_breaks_ties_by_path_and_returns_everything_without_k() -> None:
    twins = [_track(name, [(0.5, 0.5)]) for name in ("b", "a", "c")]
    far = _track("d", [(-0.5, -0.5)])
    ranked = rank([far, *twins], mood_target(0.5, 0.5))
    assert [m.track.title for m in ranked] == ["a", "b", "c", "d"]
    assert [m.track.title for m in rank([far, *twins], mood_target(0.5, 0.5), k=2)] == ["a", "b"]


def test_a_set_of_targets_pays_for_reusing_a_track() -> None:
    # A is on the target, B 0.1 from it, C 0.2; each reuse costs 0.15.
    tracks = [
        _track("A", [(0.0, 0.0)]), _track("B", [(0.1, 0.0)]), _track("C", [(0.2, 0.0)])
    ]  # fmt: skip
    far = [_track(name, [(0.9, 0.9)]) for name in ("E", "D")]  # twins, far away
    picks = recommend_set([*tracks, *far], [mood_target(0.0, 0.0)] * 4)
    assert [m[0].track.title for m in picks] == ["A", "B", "A", "C"]
    assert all(len(m) == 3 for m in picks)  # the top 3 by default
    twins = recommend_set(far, [mood_target(0.9, 0.9)], k=2)
    assert [m.track.title for m in twins[0]] == ["D", "E"]  # a tie goes by path
    # The distances shown stay the true ones.
    assert [m[0].distance for m in picks] == pytest.approx([0.0, 0.1, 0.0, 0.2])


def test_nearest_by_tempo_is_the_closest_tempo() -> None:
    tracks = [_track(f"t{bpm}", [(0.0, 0.0)], tempo=bpm) for bpm in (60, 120, 180)]
    assert nearest_by_tempo(tracks, mood_target(0.0, 0.0)).title == "t120"  # 117 bpm
    assert nearest_by_tempo(tracks, mood_target(0.0, 0.8)).title == "t180"  # 168 bpm
    same = [_track(name, [(0.0, 0.0)], tempo=117) for name in ("y", "x")]
    assert nearest_by_tempo(same, mood_target(0.0, 0.0)).title == "x"  # a tie goes by path
    with pytest.raises(ValueError, match="no tracks"):
        nearest_by_tempo([], mood_target(0.0, 0.0))


def test_emd_is_a_transport_distance() -> None:
    points = [(0.0, 0.0), (1.0, 0.0)]
    assert emd(points, points) == pytest.approx(0)
    assert emd(points, [(0.0, 1.0), (1.0, 1.0)]) == pytest.approx(1)
    # Moving mass, not matching means: two spread clouds with the same mean are apart.
    assert emd([(0.0, 0.0), (0.0, 0.0)], [(-1.0, 0.0), (1.0, 0.0)]) == pytest.approx(1)
    assert emd([(0.0, 0.0)], [(0.0, 2.0), (0.0, 0.0), (0.0, 1.0)]) == pytest.approx(1)
    # Two points against three: half the mass at 0 and 3, a third at 0, 1 and 3. A sixth
    # moves 0 -> 1 and a sixth 3 -> 1: 1/6 + 2/6.
    assert emd([(0.0, 0.0), (3.0, 0.0)], [(0.0, 0.0), (1.0, 0.0), (3.0, 0.0)]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="points on both sides"):
        emd([], points)
    with pytest.raises(ValueError, match="points on both sides"):
        emd(points, [])


def test_recommend_command_prints_a_table_and_json(
    library: MusicLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["library", "recommend", "--index", str(library.index), "-q"]
    assert main([*args, "--valence", "0.6", "--arousal", "0.8", "-k", "4"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:3] == ["#", "distance", "track"]
    assert len(table) == 6
    assert main([*args, "--scene", "dialogue", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    distances = [r["distance"] for r in document["results"]]
    assert len(distances) == 5 and distances == sorted(distances)
    assert document["target"]["label"] == "scene dialogue"


def test_doctor_reports_the_index(
    library: MusicLibrary, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOODSCORE_LIBRARY_INDEX", str(library.index))
    assert main(["doctor"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "music library" in x)
    assert "30 tracks (20 playable audio), 1 unreadable" in line


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--scene", "combat", "--valence", "0.1", "--arousal", "0"], "give one of"),
        (["--valence", "0.1"], "go together"),
        (["--valence", "2", "--arousal", "0"], "outside [-1, 1]"),
        (["--scene", "disco"], "no scene preset named 'disco'"),
        ([], "give one of"),
    ],
)
def test_recommend_mistakes_are_one_line(
    library: MusicLibrary, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    assert main(["library", "recommend", "--index", str(library.index), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err


def test_scan_and_recommend_need_a_folder_and_an_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = tmp_path / "x.sqlite"
    assert main(["library", "scan", str(tmp_path / "nowhere"), "--index", str(index)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not index.exists()
    missing = tmp_path / "none.sqlite"
    assert main(["library", "recommend", "--scene", "calm", "--index", str(missing)]) == 2
    assert "library scan" in capsys.readouterr().err
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database " * 100)
    assert main(["library", "recommend", "--scene", "calm", "--index", str(junk)]) == 2
    assert "not a moodscore library index" in capsys.readouterr().err


@pytest.mark.slow
def test_recommend_for_a_video_lists_its_scenes(
    library: MusicLibrary,
    tracks: list[Track],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clip = write_clip(
        tmp_path / "calm_busy.mp4",
        duration=16.0,
        intensity=lambda t: 0.05 if t < 8 else 0.95,
        size=(320, 180),
    )
    args = ["library", "recommend", "--video", str(clip), "--index", str(library.index)]
    assert main([*args, "--json", "-k", "3", "-q"]) == 0
    document = json.loads(capsys.readouterr().out)
    segments = document["segments"]
    assert len(segments) == 2
    calm, busy = segments
    assert calm["t_end"] == pytest.approx(busy["t_start"]) and 6 <= busy["t_start"] <= 10
    assert calm["arousal"] < 0 < busy["arousal"]
    calm_pick, busy_pick = calm["results"][0]["path"], busy["results"][0]["path"]
    assert library.moods[Path(calm_pick).name][1] < 0 < library.moods[Path(busy_pick).name][1]
    # Research seed 001's spread of the first choices: J = 2 scenes over the K tracks, two
    # different tracks chosen once each: 2 (1 - J/K)^2 + (K - 2) (J/K)^2.
    assert calm_pick != busy_pick
    k = len(tracks)
    assert document["diversity"] == pytest.approx(
        2 * (1 - 2 / k) ** 2 + (k - 2) * (2 / k) ** 2, abs=1e-4
    )


# -- the library mode ------------------------------------------------------------------------


def _track(name: str, windows: list[tuple[float, float]], tempo: float = 120.0) -> Track:
    features = TrackFeatures(
        kind="audio", duration=30.0, tempo=tempo, tonic=0, mode="major", mode_strength=0.1,
        loudness_db=-20.0, onset_rate=3.0, centroid_hz=1500.0, segment=(2.0, 14.0),
        valence=float(np.mean([v for v, _ in windows])),
        arousal=float(np.mean([a for _, a in windows])), windows=tuple(windows),
        chroma_mean=(0.0,) * 12, chroma_std=(0.0,) * 12,
    )  # fmt: skip
    return Track(Path(f"/music/{name}.wav"), 0, 0, features)


def _plan(bar: int, valence: float, bpm: float) -> Plan:
    return Plan(
        bar=bar, bpm=bpm, layers=3, tonic=2, mode="major" if valence >= 0 else "minor",
        density=0.5, valence=valence, arousal=0.0,
    )  # fmt: skip


def test_the_director_holds_a_track_then_switches_to_a_clearly_better_one() -> None:
    calm = _track("calm", [(-0.5, -0.7)], tempo=66)
    busy = _track("busy", [(0.5, 0.7)], tempo=200)
    director = LibraryDirector(tracks=[calm, busy], min_hold_bars=4, switch_margin=0.1)
    assert director.choose(_plan(0, -0.5, 70)).track is calm
    # The mood turns at bar 1; the calm track holds until it has played four bars.
    picks = [director.choose(_plan(bar, 0.6, 150)).track.title for bar in range(1, 7)]
    assert picks == ["calm", "calm", "calm", "busy", "busy", "busy"]
    # Its tempo is folded into the bar clock's 60-180 bpm, and it starts at its segment.
    choice = director.current
    assert choice is not None and choice.bpm == 100 and choice.start == 2.0
    assert clock_bpm(45) == 90 and clock_bpm(400) == 100


@pytest.fixture(scope="module")
def library_render(
    library: MusicLibrary, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    """A calm-then-busy clip rendered in the library mode: the WAV and the timeline."""
    folder = tmp_path_factory.mktemp("library-render")
    clip = write_clip(
        folder / "clip.mp4",
        duration=20.0,
        intensity=lambda t: 0.05 if t < 8 else 0.95,
        size=(320, 180),
    )
    config = folder / "config.toml"
    config.write_text("[library]\nmin_hold_bars = 2\ncrossfade_s = 1.0\n")
    out, timeline = folder / "scored.wav", folder / "scored.json"
    code = main(
        [
            "render", str(clip), "-o", str(out), "--timeline", str(timeline),
            "--library", str(library.index), "--config", str(config),
        ]
    )  # fmt: skip
    assert code == 0
    return out, json.loads(timeline.read_text())


@pytest.mark.slow
def test_a_library_render_plays_the_tracks_and_switches_on_a_bar_line(
    library: MusicLibrary, tracks: list[Track], library_render: tuple[Path, dict]
) -> None:
    out_path, timeline = library_render
    out, rate = soundfile.read(str(out_path), dtype="float32")
    assert len(out) == pytest.approx(20.0 * rate, abs=rate * 0.01)
    gain = load_config(use_user_file=False).engine.master_gain
    audio = [t for t in tracks if t.playable]

    def source(track: Track, start: float, seconds: float) -> np.ndarray:
        """The track from ``start`` on, looping back to ``start`` at its end (as it plays)."""
        signal = load_audio(track.path, rate=rate, mono=False)[round(start * rate) :]
        repeats = math.ceil(seconds * rate / len(signal))
        return np.concatenate([signal] * repeats)[: round(seconds * rate)]

    # The first bars are the chosen track itself, from its segment, sample for sample.
    head = out[: 2 * rate]
    scores = [
        np.corrcoef(source(t, t.features.segment[0], 2.0)[:, 0], head[:, 0])[0, 1] for t in audio
    ]
    first = audio[int(np.argmax(scores))]
    assert max(scores) > 0.99
    assert library.moods[first.path.name][1] < 0  # a calm track for the calm start
    # The first switch: the first sample where the output is no longer that track alone (the
    # WAV is 16-bit, 3e-5 a step, so 1e-4 is three steps; the first 10 ms hold the fade-in).
    expected = gain * source(first, first.features.segment[0], len(out) / rate)
    residual = np.abs(out - expected).max(axis=1)
    residual[: round(0.01 * rate)] = 0
    switch = int(np.argmax(residual > 1e-4)) / rate
    downbeats = [b["audio_time"] for b in timeline["bars"]]
    assert 8.0 < switch < 20.0
    bar = min(timeline["bars"], key=lambda b: abs(b["audio_time"] - switch))
    assert 0 <= switch - bar["audio_time"] <= 0.004, (switch, downbeats)
    # After the crossfade another track plays, and the bar clock runs at its tempo.
    after = out[round((switch + 1.5) * rate) : round((switch + 3.5) * rate), 0]
    best = max(
        audio,
        key=lambda t: np.corrcoef(
            source(t, t.features.segment[0] + 1.5, 2.0)[: len(after), 0], after
        )[0, 1],
    )
    assert best is not first
    assert bar["bpm"] == pytest.approx(clock_bpm(best.features.tempo))
    assert np.abs(out).max() < 1.0
    # The render's end fades out like the band does: no click in the last samples.
    assert np.abs(out[-48:]).max() < 0.01


# -- seed track ------------------------------------------------------------------------------


def _write_seed(path: Path) -> Path:
    """A hornpipe-like seed: dotted 8th + 16th pairs up and down a G major arpeggio."""
    figure = [(67, 0.75), (71, 0.25), (74, 0.75), (71, 0.25)] + [(67, 0.75), (74, 0.25)] * 2
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4))
    for _ in range(4):
        for pitch, beats in figure:
            track.append(mido.Message("note_on", note=pitch, velocity=90, time=0))
            track.append(mido.Message("note_off", note=pitch, velocity=0, time=round(beats * 480)))
    midi.save(path)
    return path


def _histograms(notes: list[tuple[int, float]], tonic: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
    pitch = np.zeros(12)
    rhythm = np.zeros(len(lengths) + 1)
    for midi_pitch, duration in notes:
        pitch[(midi_pitch - tonic) % 12] += 1
        rhythm[lengths.index(duration) if duration in lengths else -1] += 1
    return pitch / pitch.sum(), rhythm / rhythm.sum()


def test_a_seed_track_draws_the_opening_towards_its_phrase(tmp_path: Path) -> None:
    seed = _write_seed(tmp_path / "seed.mid")
    phrase = load_seed_phrase(seed, notes=32)
    assert (phrase.tonic, phrase.mode, phrase.notes) == (7, "major", 32)
    assert all(sum(_sixteenths(bar)) == 16 for bar in phrase.bars)
    seed_pitch, seed_rhythm = _histograms(
        [(67, 0.75), (71, 0.25), (74, 0.75), (71, 0.25), (67, 0.75), (74, 0.25)] * 2, 7
    )
    base = load_config(use_user_file=False).composer
    plans = [
        Plan(bar=b, bpm=110, layers=1, tonic=2, mode="major", density=0.5,
             valence=0.3, arousal=0.0)
        for b in range(4)
    ]  # fmt: skip
    distances = []
    for seed_number in range(12):
        pair = []
        for primed in (True, False):
            composer = Composer(config=dataclasses.replace(base, seed=seed_number))
            if primed:
                prime_composer(composer, phrase)
            notes = [
                (n.pitch, n.duration)
                for plan in plans
                for n in composer.compose_bar(plan).notes
                if n.layer is Layer.LEAD
            ]
            pitch, rhythm = _histograms(notes, 2)
            pair.append(
                (np.abs(pitch - seed_pitch).sum(), np.abs(rhythm - seed_rhythm).sum(), notes)
            )
        distances.append(pair)
    primed_pitch, plain_pitch = (np.mean([d[i][0] for d in distances]) for i in (0, 1))
    primed_rhythm, plain_rhythm = (np.mean([d[i][1] for d in distances]) for i in (0, 1))
    assert primed_pitch < plain_pitch
    assert primed_rhythm < 0.5 * plain_rhythm
    # Priming draws no random numbers: the same seed gives the same primed melody.
    again = Composer(config=dataclasses.replace(base, seed=0))
    prime_composer(again, phrase)
    notes = [
        (n.pitch, n.duration)
        for plan in plans
        for n in again.compose_bar(plan).notes
        if n.layer is Layer.LEAD
    ]
    assert notes == distances[0][0][2]


def _sixteenths(bar: tuple) -> list[int]:
    from models.ngram import DURATION_SIXTEENTHS

    return [DURATION_SIXTEENTHS[token.duration] for token in bar]


def test_seed_track_mistakes_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out.wav")
    assert main(["render", "demo", "--duration", "2", "-o", out, "--seed-track", "x.wav"]) == 2
    assert "must be a MIDI file" in capsys.readouterr().err
    missing = str(tmp_path / "missing.mid")
    assert main(["render", "demo", "--duration", "2", "-o", out, "--seed-track", missing]) == 2
    assert "does not exist" in capsys.readouterr().err
    config = load_config(use_user_file=False).composer
    composer = Composer(config=dataclasses.replace(config, melody_model="ngram"))
    with pytest.raises(ModelError, match="melody_model = 'lstm'"):
        prime_composer(composer, load_seed_phrase(_write_seed(tmp_path / "s.mid")))


@pytest.mark.slow
def test_render_with_a_seed_track_changes_the_music(tmp_path: Path) -> None:
    seed = _write_seed(tmp_path / "seed.mid")
    midis = []
    for extra in ([], ["--seed-track", str(seed)]):
        midi = tmp_path / f"out{len(extra)}.mid"
        args = ["render", "demo", "--duration", "8", "-o", str(tmp_path / "out.wav")]
        assert main([*args, "--midi", str(midi), "--seed", "3", "-q", *extra]) == 0
        lead = mido.MidiFile(midi).tracks[1]
        midis.append([m.note for m in lead if m.type == "note_on" and m.velocity > 0])
    plain, primed = midis
    assert plain and primed and plain != primed


def test_compose_takes_a_seed_track_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = _write_seed(tmp_path / "seed.mid")
    leads = []
    for extra in ([], ["--seed-track", str(seed)]):
        midi = tmp_path / f"piece{len(extra)}.mid"
        args = ["compose", "--valence", "0.5", "--arousal", "0", "--bars", "4", "--seed", "3"]
        assert main([*args, "-o", str(midi), *extra]) == 0
        lead = mido.MidiFile(midi).tracks[1]
        leads.append([m.note for m in lead if m.type == "note_on" and m.velocity > 0])
    assert leads[0] and leads[1] and leads[0] != leads[1]
    missing = str(tmp_path / "missing.mid")
    args = ["compose", "--valence", "0", "--arousal", "0", "--bars", "1", "-o", str(midi)]
    assert main([*args, "--seed-track", missing]) == 2
    assert "does not exist" in capsys.readouterr().err
