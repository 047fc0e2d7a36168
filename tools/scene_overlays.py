"""Dialogue boxes and menus drawn over real game frames, for the scene model's training footage.

ViZDoom and the Atari games have few dialogue scenes and menus of one look, so the recorders
composite them: a frame of real gameplay is frozen (games pause or idle while a dialogue or a
menu is up) and a text box or a menu is drawn over it at the game's own resolution, before the
frame is shrunk to the model's size, as a captured game would be. Styles are drawn at random
(position, size, colours, opacity, border, name tag, portrait, fonts, typewriter speed, menu
layout, cursor or highlight bar) so the model learns "a box of text at the bottom" and "a list
of items with a moving highlight" rather than one look. The model card says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WORDS = [
    "the",
    "old",
    "gate",
    "is",
    "sealed",
    "you",
    "must",
    "find",
    "the",
    "key",
    "before",
    "night",
    "falls",
    "we",
    "have",
    "waited",
    "for",
    "you",
    "traveller",
    "beware",
    "of",
    "the",
    "caves",
    "to",
    "the",
    "north",
    "my",
    "brother",
    "went",
    "there",
    "and",
    "never",
    "came",
    "back",
    "take",
    "this",
    "sword",
    "it",
    "belonged",
    "to",
    "my",
    "father",
    "the",
    "village",
    "needs",
    "your",
    "help",
    "please",
    "hurry",
    "I",
    "do",
    "not",
    "trust",
    "the",
    "king",
    "his",
    "soldiers",
    "took",
    "our",
    "harvest",
    "again",
    "where",
    "are",
    "you",
    "going",
    "the",
    "bridge",
    "collapsed",
    "last",
    "winter",
    "you",
    "will",
    "need",
    "a",
    "boat",
    "the",
    "merchant",
    "sells",
    "potions",
    "remember",
    "what",
    "I",
    "told",
    "you",
    "stay",
    "close",
    "and",
    "keep",
    "quiet",
    "they",
    "are",
    "listening",
]
MENU_WORDS = [
    "new game",
    "continue",
    "load game",
    "save game",
    "options",
    "settings",
    "audio",
    "video",
    "controls",
    "gameplay",
    "quit",
    "exit to title",
    "resume",
    "inventory",
    "map",
    "journal",
    "skills",
    "equipment",
    "difficulty",
    "language",
    "brightness",
    "music volume",
    "sound effects",
    "subtitles",
    "credits",
    "back",
    "apply",
    "multiplayer",
    "extras",
]
TITLES = ("PAUSED", "OPTIONS", "MAIN MENU", "SETTINGS", "INVENTORY", "GAME OVER", "SAVE")
FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
)


def _colour(rng: np.random.Generator, dark: bool) -> tuple[int, int, int]:
    base = rng.integers(0, 70, 3) if dark else rng.integers(170, 256, 3)
    return int(base[0]), int(base[1]), int(base[2])


def _blend(canvas: np.ndarray, overlay: np.ndarray, mask: np.ndarray, alpha: float) -> None:
    canvas[mask] = (alpha * overlay[mask] + (1 - alpha) * canvas[mask]).astype(np.uint8)


@dataclass
class DialogueOverlay:
    """One conversation: a text box that types its lines out, page after page.

    Call :meth:`draw` with the frozen background and the seconds since the dialogue began.
    """

    rng: np.random.Generator
    width: int
    height: int

    def __post_init__(self) -> None:
        rng = self.rng
        w, h = self.width, self.height
        self.top = bool(rng.random() < 0.15)
        box_h = int(h * rng.uniform(0.22, 0.36))
        margin = int(w * rng.uniform(0.0, 0.06))
        y0 = int(h * rng.uniform(0.02, 0.06)) if self.top else h - box_h - int(h * 0.03)
        self.box = (margin, y0, w - margin, y0 + box_h)
        self.dark = bool(rng.random() < 0.8)
        self.fill = _colour(rng, self.dark)
        self.text_colour = (235, 235, 235) if self.dark else (20, 20, 20)
        self.border = _colour(rng, not self.dark) if rng.random() < 0.7 else None
        self.alpha = float(rng.uniform(0.7, 1.0))
        self.font = FONTS[int(rng.integers(len(FONTS)))]
        self.scale = float(rng.uniform(0.32, 0.5)) * h / 240
        self.portrait = rng.random() < 0.4
        self.name = " ".join(rng.choice(["Elder", "Mira", "Guard", "Kato", "Nyx", "Soldier"], 1))
        self.chars_per_s = float(rng.uniform(18, 45))
        self.pages = [" ".join(rng.choice(WORDS, int(rng.integers(10, 22)))) for _ in range(8)]
        self.page_s = float(rng.uniform(2.5, 4.5))
        self.portrait_colour = _colour(rng, bool(rng.random() < 0.5))

    def draw(self, background: np.ndarray, t: float) -> np.ndarray:
        """The frame ``t`` seconds into the dialogue.

        background : np.ndarray [shape=(h, w, 3), dtype=uint8], RGB; not modified.
        """
        canvas = background.copy()
        x0, y0, x1, y1 = self.box
        overlay = canvas.copy()
        cv2.rectangle(overlay, (x0, y0), (x1, y1), self.fill, -1)
        mask = np.zeros(canvas.shape[:2], dtype=bool)
        mask[y0:y1, x0:x1] = True
        _blend(canvas, overlay, mask, self.alpha)
        if self.border is not None:
            cv2.rectangle(canvas, (x0 + 1, y0 + 1), (x1 - 2, y1 - 2), self.border, 2)
        text_x = x0 + 8
        if self.portrait:
            side = y1 - y0 - 12
            cv2.rectangle(
                canvas, (x0 + 6, y0 + 6), (x0 + 6 + side, y0 + 6 + side), self.portrait_colour, -1
            )
            centre = (x0 + 6 + side // 2, y0 + 6 + side // 2)
            cv2.circle(canvas, centre, max(3, side // 3), (230, 190, 160), -1)
            text_x += side + 6
        line_h = max(8, int(28 * self.scale))
        cv2.putText(
            canvas, self.name, (text_x, y0 + line_h), self.font, self.scale * 1.1,
            self.text_colour, 1, cv2.LINE_AA,
        )  # fmt: skip
        page = int(t // self.page_s) % len(self.pages)
        shown = int((t % self.page_s) * self.chars_per_s)
        text = self.pages[page][:shown]
        max_chars = max(8, int((x1 - text_x) / (13 * self.scale)))
        lines = [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
        for row, line in enumerate(lines[:3]):
            y = y0 + line_h * (row + 2) + 2
            cv2.putText(
                canvas, line, (text_x, y), self.font, self.scale, self.text_colour, 1, cv2.LINE_AA
            )
        if shown >= len(self.pages[page]) and int(t * 3) % 2 == 0:
            tip = (x1 - 14, y1 - 12)
            points = np.array([[tip[0], tip[1]], [tip[0] + 8, tip[1]], [tip[0] + 4, tip[1] + 6]])
            cv2.fillPoly(canvas, [points], self.text_colour)
        return canvas


@dataclass
class MenuOverlay:
    """A pause or title menu whose highlight moves between items now and then."""

    rng: np.random.Generator
    width: int
    height: int

    def __post_init__(self) -> None:
        rng = self.rng
        self.items = list(rng.choice(MENU_WORDS, int(rng.integers(3, 9)), replace=False))
        self.title = str(rng.choice(TITLES)) if rng.random() < 0.7 else ""
        self.background = int(rng.integers(3))  # 0 dimmed game, 1 blurred game, 2 solid
        self.dim = float(rng.uniform(0.25, 0.6))
        self.solid = _colour(rng, dark=True)
        self.align_left = bool(rng.random() < 0.4)
        self.bar = bool(rng.random() < 0.6)  # highlight bar, else a cursor marker
        self.font = FONTS[int(rng.integers(len(FONTS)))]
        self.scale = float(rng.uniform(0.4, 0.65)) * self.height / 240
        self.colour = _colour(rng, dark=False)
        self.highlight = _colour(rng, dark=bool(rng.random() < 0.3))
        self.move_s = float(rng.uniform(0.6, 2.0))
        self.moves = rng.integers(-1, 2, 64)
        self.panel = rng.random() < 0.5

    def draw(self, background: np.ndarray, t: float) -> np.ndarray:
        """The frame ``t`` seconds after the menu opened.

        background : np.ndarray [shape=(h, w, 3), dtype=uint8], RGB; not modified.
        """
        h, w = self.height, self.width
        if self.background == 0:
            canvas = (background.astype(np.float32) * self.dim).astype(np.uint8)
        elif self.background == 1:
            blurred = cv2.GaussianBlur(background, (0, 0), sigmaX=max(2.0, w / 60))
            canvas = (blurred.astype(np.float32) * (0.4 + self.dim)).clip(0, 255).astype(np.uint8)
        else:
            canvas = np.empty_like(background)
            canvas[:] = self.solid
        line_h = max(10, int(34 * self.scale))
        top = int(h * 0.2) if self.title else int(h * 0.15)
        if self.panel:
            x0 = int(w * (0.08 if self.align_left else 0.25))
            cv2.rectangle(
                canvas, (x0, top - line_h), (w - x0, top + line_h * len(self.items) + 4),
                (20, 20, 30), -1,
            )  # fmt: skip
        if self.title:
            size = cv2.getTextSize(self.title, self.font, self.scale * 1.6, 2)[0]
            cv2.putText(
                canvas, self.title, ((w - size[0]) // 2, int(h * 0.12)), self.font,
                self.scale * 1.6, self.colour, 2, cv2.LINE_AA,
            )  # fmt: skip
        steps = int(t // self.move_s)
        selected = int(np.clip(np.cumsum(self.moves[: steps + 1])[-1], 0, len(self.items) - 1))
        for row, item in enumerate(self.items):
            size = cv2.getTextSize(item, self.font, self.scale, 1)[0]
            x = int(w * 0.12) if self.align_left else (w - size[0]) // 2
            y = top + line_h * row + line_h // 2
            colour = self.colour
            if row == selected:
                if self.bar:
                    cv2.rectangle(
                        canvas, (x - 6, y - size[1] - 4), (x + size[0] + 6, y + 5),
                        self.highlight, -1,
                    )  # fmt: skip
                    colour = (10, 10, 10) if sum(self.highlight) > 380 else (250, 250, 250)
                else:
                    cv2.putText(
                        canvas, ">", (x - 16, y), self.font, self.scale, self.highlight, 1,
                        cv2.LINE_AA,
                    )  # fmt: skip
            cv2.putText(canvas, item, (x, y), self.font, self.scale, colour, 1, cv2.LINE_AA)
        return canvas
