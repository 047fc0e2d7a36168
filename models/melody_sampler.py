"""Streaming melody generation on a trained :class:`~models.melody_net.MelodyLSTM`.

:class:`MelodySampler` keeps the hidden state between calls and writes one bar per call, with
temperature, top-p and masks (scale, register, leap). Each step is a handful of matrix-vector
products on precomputed tables, so a bar costs a few milliseconds on one CPU core.

This module stays whole (about 500 lines): the sampler and the batch-1 step kernels it drives
(the rearranged weights, their torch and numpy forms) are one algorithm, and its output is
pinned bit for bit by the golden render tests.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from models.melody_codec import (
    DURATION_START,
    MAX_BAR,
    MODES,
    N_DURATIONS,
    N_PITCHES,
    PHRASE_BARS,
    PITCH_LOW,
    PITCH_START,
    REST,
    Token,
    reference_pitch,
)
from models.melody_data import Mode
from models.melody_net import MelodyLSTM
from models.ngram import DURATION_SIXTEENTHS, METRE_NAMES, METRE_SIXTEENTHS, metre_for_beats

_DURATION_16 = np.array(DURATION_SIXTEENTHS, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class BarSpec:
    """What the next bar should be.

    tonic : pitch class of the key, 0-11. mode : ``"major"`` or ``"minor"``.
    density : sounding notes per 4/4 bar to ask the model for (see
        :meth:`~models.melody_net.MelodyModelConfig.density_for`).
    register : lowest and highest MIDI pitch allowed; its middle is the register label.
    beats_per_bar : quarter notes in the bar; 5 and 7 are phrased on 4/4 positions.
    phrase_bar : the bar's place in its 8-bar phrase (0 opens a phrase, 7 closes it).
    scale : allowed pitch classes (absolute, 0 = C), or None for no scale constraint.
    max_leap : the largest interval in semitones from the previous sounding note, or None.
    """

    tonic: int
    mode: Mode
    density: float
    register: tuple[int, int] = (60, 84)
    beats_per_bar: int = 4
    phrase_bar: int = 0
    scale: frozenset[int] | None = None
    max_leap: int | None = 12

    @property
    def sixteenths(self) -> int:
        """Length of the bar in 16ths."""
        return 4 * self.beats_per_bar


class SamplerState(NamedTuple):
    """A snapshot of a :class:`MelodySampler` (restore it to take a bar back)."""

    h: tuple[torch.Tensor, ...]
    c: tuple[torch.Tensor, ...]
    pending: Token | None
    last_midi: int | None


class MelodySampler:
    """Stateful bar-by-bar melody generator on a trained :class:`MelodyLSTM`.

    The hidden state runs on from bar to bar and across changes of key, mode, density and
    register: each bar's :class:`BarSpec` only changes the conditioning and the masks.

    Parameters
    ----------
    model : the trained network (its device is used; batch 1, no gradients).
    rng : the caller's generator; the same generator state gives the same notes.
    temperature : > 0; below 1 sharpens the model's choices, above 1 flattens them.
    top_p : nucleus sampling: draw from the smallest set of tokens holding this much probability
        (after temperature and masks); 1 disables it.
    """

    def __init__(
        self,
        model: MelodyLSTM,
        *,
        rng: np.random.Generator,
        temperature: float = 0.9,
        top_p: float = 0.95,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.model = model
        self.rng = rng
        self.temperature = temperature
        self.top_p = top_p
        device = next(model.parameters()).device
        self._steps: _NumpySteps | _TorchSteps = (
            _NumpySteps(model) if device.type == "cpu" else _TorchSteps(model)
        )
        self._threads = _one_blas_thread if device.type == "cpu" else contextlib.nullcontext
        zeros = self._steps.zeros()
        self._h: tuple[Any, ...] = tuple(zeros for _ in range(model.config.layers))
        self._c: tuple[Any, ...] = tuple(zeros for _ in range(model.config.layers))
        self._pending: Token | None = None  # the last note, not yet fed to the LSTM
        self._last_midi: int | None = None
        self._bar_key: tuple[Any, ...] | None = None
        self._condition: _BarCondition | None = None
        self._static_mask = np.ones(N_PITCHES, dtype=bool)
        self._midi = np.zeros(N_PITCHES, dtype=np.int64)
        self._relative = np.arange(N_PITCHES, dtype=np.int64) + PITCH_LOW
        self._relative[REST] = 0

    # -- state ------------------------------------------------------------------------------

    def snapshot(self) -> SamplerState:
        """The current state (cheap: state arrays are replaced, never modified in place)."""
        return SamplerState(self._h, self._c, self._pending, self._last_midi)

    def restore(self, state: SamplerState) -> None:
        """Go back to a :meth:`snapshot`."""
        self._h, self._c, self._pending, self._last_midi = state

    @property
    def last_midi(self) -> int | None:
        """MIDI pitch of the last sounding note written or fed, if any."""
        return self._last_midi

    # -- generation -------------------------------------------------------------------------

    @torch.inference_mode()
    def bar(
        self,
        spec: BarSpec,
        *,
        prefix: Sequence[Token] = (),
        rhythm: Sequence[int] | None = None,
    ) -> list[Token]:
        """Write one bar: ``prefix`` notes as given, then sampled notes until the bar is full.

        Parameters
        ----------
        spec : the key, labels, bar length and masks of this bar.
        prefix : notes to play first, unchanged (a motif repeat); they run through the LSTM so
            the state knows them. Those that would overflow the bar are dropped.
        rhythm : duration ids for the notes after the prefix (a varied repeat keeps its rhythm
            and draws new pitches); when they run out or would overflow, sampling takes over.

        Returns the bar's notes, prefix included; their durations sum to the bar length.
        """
        with self._threads():
            return self._bar(spec, prefix, rhythm)

    def _bar(
        self, spec: BarSpec, prefix: Sequence[Token], rhythm: Sequence[int] | None
    ) -> list[Token]:
        condition = self._prepare(spec)
        metre = metre_for_beats(spec.beats_per_bar)
        slot_base = METRE_NAMES.index(metre) * MAX_BAR
        metre_bar = METRE_SIXTEENTHS[metre]
        phrase = spec.phrase_bar % PHRASE_BARS
        length = spec.sixteenths
        position = 0
        notes: list[Token] = []
        for token in prefix:
            step = int(_DURATION_16[token.duration])
            if position + step > length:
                break
            self._advance(condition, slot_base + position % metre_bar, phrase)
            self._accept(token)
            notes.append(token)
            position += step
        forced = list(rhythm) if rhythm is not None else []
        index = 0
        while position < length:
            remaining = length - position
            output = self._advance(condition, slot_base + position % metre_bar, phrase)
            duration_logits, pitch_part = self._steps.heads(output, condition)
            if index < len(forced) and _DURATION_16[forced[index]] <= remaining:
                duration = forced[index]
            else:
                duration = self._draw(duration_logits, remaining >= _DURATION_16)
            index += 1
            pitch_logits = self._steps.pitch_logits(pitch_part, duration)
            pitch = self._draw(pitch_logits, self._pitch_mask(spec))
            token = Token(pitch, duration)
            self._accept(token)
            notes.append(token)
            position += int(_DURATION_16[duration])
        return notes

    def _accept(self, token: Token) -> None:
        self._pending = token
        if token.pitch != REST:
            self._last_midi = int(self._midi[token.pitch])

    def _prepare(self, spec: BarSpec) -> _BarCondition:
        """Conditioning and static pitch mask of a bar, recomputed only when they change."""
        key = (spec.mode, spec.density, spec.register, spec.tonic, spec.scale)
        if self._condition is None or key != self._bar_key:
            low, high = spec.register
            register = 0.5 * (low + high) - reference_pitch(spec.tonic)
            # The labels go where the model's weights are (a CUDA model refused CPU indices);
            # the steps run on that device too.
            on = self._steps.device
            with torch.no_grad():
                vector = self.model.conditioning(
                    torch.tensor(MODES.index(spec.mode), device=on),
                    torch.tensor(float(spec.density), device=on),
                    torch.tensor(float(register), device=on),
                )
            self._condition = self._steps.condition(vector)
            self._midi = reference_pitch(spec.tonic) + self._relative
            mask = (self._midi >= low) & (self._midi <= high)
            if spec.scale is not None:
                in_scale = np.zeros(12, dtype=bool)
                in_scale[list(spec.scale)] = True
                mask &= in_scale[self._midi % 12]
            mask[REST] = True
            self._static_mask = mask
            self._bar_key = key
        return self._condition

    def _advance(self, condition: _BarCondition, slot: int, phrase: int) -> Any:
        """Feed the pending note (or the start symbol) and return the top layer's output."""
        pending = self._pending
        if pending is None:
            previous = PITCH_START * (N_DURATIONS + 1) + DURATION_START
        else:
            previous = pending.pitch * (N_DURATIONS + 1) + pending.duration
        self._h, self._c = self._steps.step(
            self._h, self._c, condition, previous, slot * PHRASE_BARS + phrase
        )
        self._pending = None
        return self._h[-1]

    def _pitch_mask(self, spec: BarSpec) -> np.ndarray:
        allowed = self._static_mask
        if spec.max_leap is not None and self._last_midi is not None:
            near = allowed & (np.abs(self._midi - self._last_midi) <= spec.max_leap)
            # After a register change the old note may be far away: then only the register and
            # the scale bind, and the line jumps once to get there.
            if near[:REST].any():
                near[REST] = True
                allowed = near
        return allowed

    def _draw(self, logits: np.ndarray, allowed: np.ndarray) -> int:
        values = logits / self.temperature if self.temperature != 1.0 else logits
        probs = np.exp(values - values[allowed].max()) * allowed
        if self.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cumulative = np.cumsum(probs[order])
            keep = int(np.searchsorted(cumulative, self.top_p * cumulative[-1])) + 1
            index = int(
                np.searchsorted(
                    cumulative[:keep], self.rng.random() * cumulative[keep - 1], "right"
                )
            )
            return int(order[min(index, keep - 1)])
        cumulative = np.cumsum(probs)
        index = int(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], "right"))
        return min(index, len(probs) - 1)


def time_bars(
    model: MelodyLSTM, *, bars: int, temperature: float = 0.9, top_p: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Speed of :meth:`MelodySampler.bar`: ms per 4/4 bar in D major, density 0.9 and 0.3
    alternating every 4 bars, scale constraint on; p50, p95, mean, notes per bar and count."""
    import time

    sampler = MelodySampler(
        model, rng=np.random.default_rng(seed), temperature=temperature, top_p=top_p
    )
    scale = frozenset((2 + step) % 12 for step in (0, 2, 4, 5, 7, 9, 11))
    dense, sparse = model.config.density_for(0.9), model.config.density_for(0.3)
    timings = np.empty(bars)
    notes = 0
    for bar in range(bars):
        spec = BarSpec(
            tonic=2,
            mode="major",
            density=dense if bar % 8 < 4 else sparse,
            phrase_bar=bar % PHRASE_BARS,
            scale=scale,
        )
        start = time.perf_counter()
        notes += len(sampler.bar(spec))
        timings[bar] = time.perf_counter() - start
    ms = timings * 1e3
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p95": round(float(np.percentile(ms, 95)), 3),
        "mean": round(float(ms.mean()), 3),
        "notes_per_bar": round(notes / bars, 2),
        "n": bars,
    }


@dataclass(frozen=True, slots=True)
class _Weights:
    """The network rearranged for batch-1 steps (tensors on the model's device).

    The first layer's input is a concatenation of embeddings, so its gate pre-activation is a sum
    of per-embedding terms: the previous note's (pitch and duration together), the slot's and
    phrase bar's together, and the conditioning's (once per bar). Each is a table row; a step is
    then two lookups and one matrix-vector product per layer, and the two heads share one
    product.
    """

    previous_gates: torch.Tensor  # [(N_PITCHES + 1) * (N_DURATIONS + 1), 4H]
    place_gates: torch.Tensor  # [N_SLOTS * PHRASE_BARS, 4H]
    condition_weight: torch.Tensor  # [4H, condition]
    bias0: torch.Tensor  # [4H]
    w_hh0: torch.Tensor  # [4H, H]
    upper: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per upper layer: [4H, 2H], [4H]
    heads_w: torch.Tensor  # [N_DURATIONS + H, H]: duration logits, then pitch-MLP hidden units
    heads_cw: torch.Tensor  # [N_DURATIONS + H, condition]
    heads_b: torch.Tensor  # [N_DURATIONS + H]
    pitch_duration: torch.Tensor  # [N_DURATIONS, H]: the drawn duration's share of the MLP
    pitch_out_w: torch.Tensor  # [N_PITCHES, H]
    pitch_out_b: torch.Tensor  # [N_PITCHES]

    @classmethod
    @torch.no_grad()
    def of(cls, model: MelodyLSTM) -> _Weights:
        c = model.config
        h = c.hidden
        lstm = model.lstm
        widths = [
            c.pitch_embedding,
            c.duration_embedding,
            c.slot_embedding,
            c.phrase_embedding,
            c.condition,
        ]

        def weight(name: str) -> torch.Tensor:
            return lstm.get_parameter(name)

        pitch_w, duration_w, slot_w, phrase_w, condition_w = torch.split(
            weight("weight_ih_l0"), widths, dim=1
        )
        pitch_gates = model.pitch_in.weight @ pitch_w.T
        duration_gates = model.duration_in.weight @ duration_w.T
        slot_gates = model.slot_in.weight @ slot_w.T
        phrase_gates = model.phrase_in.weight @ phrase_w.T
        upper = []
        for layer in range(1, c.layers):
            matrix = torch.cat(
                (weight(f"weight_ih_l{layer}"), weight(f"weight_hh_l{layer}")), dim=1
            )
            bias = weight(f"bias_ih_l{layer}") + weight(f"bias_hh_l{layer}")
            upper.append((matrix, bias))
        pitch_hidden = model.pitch_hidden.weight
        return cls(
            previous_gates=(pitch_gates[:, None, :] + duration_gates[None, :, :]).reshape(
                -1, 4 * h
            ),
            place_gates=(slot_gates[:, None, :] + phrase_gates[None, :, :]).reshape(-1, 4 * h),
            condition_weight=condition_w.clone(),
            bias0=weight("bias_ih_l0") + weight("bias_hh_l0"),
            w_hh0=weight("weight_hh_l0").clone(),
            upper=tuple(upper),
            heads_w=torch.cat((model.duration_head.weight[:, :h], pitch_hidden[:, :h])),
            heads_cw=torch.cat(
                (model.duration_head.weight[:, h:], pitch_hidden[:, h : h + c.condition])
            ),
            heads_b=torch.cat((model.duration_head.bias, model.pitch_hidden.bias)),
            pitch_duration=model.duration_for_pitch.weight @ pitch_hidden[:, h + c.condition :].T,
            pitch_out_w=model.pitch_head.weight.clone(),
            pitch_out_b=model.pitch_head.bias.clone(),
        )


class _BarCondition(NamedTuple):
    """Per-bar precomputations: the conditioning's share of the first layer's gates and of the
    heads (numpy arrays on the CPU, tensors elsewhere)."""

    gates: Any
    heads_bias: Any


class _TorchSteps:
    """Batch-1 steps as torch operations, for a model on a GPU."""

    def __init__(self, model: MelodyLSTM) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.w = _Weights.of(model)

    def zeros(self) -> torch.Tensor:
        return torch.zeros(self.model.config.hidden, device=self.device)

    @torch.no_grad()
    def condition(self, vector: torch.Tensor) -> _BarCondition:
        w = self.w
        return _BarCondition(
            gates=w.condition_weight @ vector + w.bias0,
            heads_bias=w.heads_cw @ vector + w.heads_b,
        )

    def step(
        self, h: tuple[Any, ...], c: tuple[Any, ...], condition: _BarCondition, previous: int,
        place: int,
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:  # fmt: skip
        w = self.w
        base = condition.gates + w.previous_gates[previous] + w.place_gates[place]
        below, cell = _torch_cell(torch.addmv(base, w.w_hh0, h[0]), c[0])
        new_h, new_c = [below], [cell]
        for layer, (weight, bias) in enumerate(w.upper, start=1):
            below, cell = _torch_cell(
                torch.addmv(bias, weight, torch.cat((below, h[layer]))), c[layer]
            )
            new_h.append(below)
            new_c.append(cell)
        return tuple(new_h), tuple(new_c)

    def heads(self, output: Any, condition: _BarCondition) -> tuple[np.ndarray, Any]:
        both = torch.addmv(condition.heads_bias, self.w.heads_w, output)
        return both[:N_DURATIONS].to("cpu", torch.float64).numpy(), both[N_DURATIONS:]

    def pitch_logits(self, pitch_part: Any, duration: int) -> np.ndarray:
        hidden = torch.relu(pitch_part + self.w.pitch_duration[duration])
        logits = torch.addmv(self.w.pitch_out_b, self.w.pitch_out_w, hidden)
        return logits.to("cpu", torch.float64).numpy()


class _NumpySteps:
    """Batch-1 steps in numpy float32, for a model on the CPU: its matrix-vector products cost a
    third of torch's single-threaded ones and need no thread pool."""

    def __init__(self, model: MelodyLSTM) -> None:
        self.model = model
        self.device = torch.device("cpu")
        w = _Weights.of(model)

        def array(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

        self.previous_gates = array(w.previous_gates)
        self.place_gates = array(w.place_gates)
        self.condition_weight = array(w.condition_weight)
        self.bias0 = array(w.bias0)
        self.w_hh0 = array(w.w_hh0)
        self.upper = [(array(weight), array(bias)) for weight, bias in w.upper]
        self.heads_w = array(w.heads_w)
        self.heads_cw = array(w.heads_cw)
        self.heads_b = array(w.heads_b)
        self.pitch_duration = array(w.pitch_duration)
        self.pitch_out_w = array(w.pitch_out_w)
        self.pitch_out_b = array(w.pitch_out_b)

    def zeros(self) -> np.ndarray:
        return np.zeros(self.model.config.hidden, dtype=np.float32)

    def condition(self, vector: torch.Tensor) -> _BarCondition:
        v = vector.detach().cpu().numpy().astype(np.float32)
        return _BarCondition(
            gates=self.condition_weight @ v + self.bias0,
            heads_bias=self.heads_cw @ v + self.heads_b,
        )

    def step(
        self, h: tuple[Any, ...], c: tuple[Any, ...], condition: _BarCondition, previous: int,
        place: int,
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:  # fmt: skip
        gates = self.w_hh0 @ h[0]
        gates += condition.gates
        gates += self.previous_gates[previous]
        gates += self.place_gates[place]
        below, cell = _numpy_cell(gates, c[0])
        new_h, new_c = [below], [cell]
        for layer, (weight, bias) in enumerate(self.upper, start=1):
            gates = weight @ np.concatenate((below, h[layer]))
            gates += bias
            below, cell = _numpy_cell(gates, c[layer])
            new_h.append(below)
            new_c.append(cell)
        return tuple(new_h), tuple(new_c)

    def heads(self, output: Any, condition: _BarCondition) -> tuple[np.ndarray, Any]:
        both = self.heads_w @ output
        both += condition.heads_bias
        return both[:N_DURATIONS].astype(np.float64), both[N_DURATIONS:]

    def pitch_logits(self, pitch_part: Any, duration: int) -> np.ndarray:
        hidden = np.maximum(pitch_part + self.pitch_duration[duration], 0.0)
        logits = self.pitch_out_w @ hidden
        logits += self.pitch_out_b
        return logits.astype(np.float64)


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

    return ThreadpoolController().select(user_api="blas")


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on one thread while a bar is sampled: its matrix-vector products are small,
    and a second BLAS thread that has to wait for a busy core makes each one 100 times slower."""
    with _blas_controller().limit(limits=1):
        yield


def _torch_cell(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # PyTorch's gate order: input, forget, cell candidate, output. One sigmoid over all four
    # (the candidate's is discarded) costs less than four calls.
    size = cell.shape[0]
    squashed = torch.sigmoid(gates)
    candidate = torch.tanh(gates[2 * size : 3 * size])
    new_cell = torch.addcmul(squashed[size : 2 * size] * cell, squashed[:size], candidate)
    return squashed[3 * size :] * torch.tanh(new_cell), new_cell


def _numpy_cell(gates: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = cell.shape[0]
    squashed = 1.0 / (1.0 + np.exp(-gates))
    new_cell = squashed[size : 2 * size] * cell + squashed[:size] * np.tanh(
        gates[2 * size : 3 * size]
    )
    return squashed[3 * size :] * np.tanh(new_cell), new_cell
