"""Render a terminal capture (`tmux capture-pane -e -p`) to a PNG, colours included.

    python3 scripts/ansi2png.py capture.txt out.png [COLS ROWS]

Needs pyte and Pillow (`python3 -m pip install pyte pillow`) and DejaVu Sans Mono.
"""
import sys

import pyte
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
PALETTE = {
    "default": "#d8dee9", "black": "#2e3440", "red": "#ef5350", "green": "#66bb6a",
    "brown": "#fbc02d", "yellow": "#fbc02d", "blue": "#42a5f5", "magenta": "#ce93d8",
    "cyan": "#4dd0e1", "white": "#eceff4",
}
BG = "#1e2430"


def colour(c, fallback):
    if c == "default":
        return fallback
    if c in PALETTE:
        return PALETTE[c]
    if len(c) == 6:
        return "#" + c
    return fallback


def main():
    src, out = sys.argv[1], sys.argv[2]
    cols = int(sys.argv[3]) if len(sys.argv) > 3 else 110
    rows = int(sys.argv[4]) if len(sys.argv) > 4 else 24
    screen = pyte.Screen(cols, rows)
    stream = pyte.Stream(screen)
    text = open(src, encoding="utf-8").read().rstrip("\n")
    # Lines joined, not ended: a last newline would scroll the first line away.
    stream.feed(text.replace("\n", "\r\n"))
    font = ImageFont.truetype(FONT, 15)
    bold = ImageFont.truetype(BOLD, 15)
    w, h = font.getbbox("M")[2], 20
    img = Image.new("RGB", (cols * w + 24, rows * h + 24), BG)
    d = ImageDraw.Draw(img)
    for y in range(rows):
        line = screen.buffer[y]
        for x in range(cols):
            ch = line[x]
            fg = colour(ch.fg, PALETTE["default"])
            bg = colour(ch.bg, BG)
            if ch.reverse:
                fg, bg = (BG if fg == PALETTE["default"] else bg), fg
            px, py = 12 + x * w, 12 + y * h
            if bg != BG:
                d.rectangle([px, py, px + w, py + h], fill=bg)
            if ch.data.strip():
                d.text((px, py + 2), ch.data, font=bold if ch.bold else font, fill=fg)
    img.save(out)


if __name__ == "__main__":
    main()
