"""Synthetic Kvasir-VQA: fake endoscopy frames in the Hugging Face parquet layout.

A frame is a round field on black (pink for colonoscopy, tan for gastroscopy), with 0-3 polyps
(red blobs, some with a white highlight; Paris type drawn as round "is", stalked "ip" or flat
"iia"; size bucket from the blob radius), an optional white ring landmark (cecum in colonoscopy,
pylorus in gastroscopy), an optional blue dye patch where a polyp was removed, 0-2 grey instruments
(a thick "tube" or a thin forked "biopsy forceps"), an optional white date overlay in the upper
left, and an optional green/black box artefact in the lower left. Each frame is asked 6 of
Kvasir-VQA's 18 fixed questions (with its real typos), answered from that scene.

Answer conventions (lower case, multi-answers joined with "; " in a fixed order, locations sorted
alphabetically as in the real set):
- "Are there any ...?" names what is there ("polyp", "cecum", "tube; biopsy forceps") or "no".
- colour/location/type questions about something absent: "none".
- questions that presuppose a polyp (its size, whether it is easy to detect) when there is none:
  "not relevant"; "Have all polyps been removed?" is "no" with polyps visible, "yes" with a dye
  patch and no polyp, else "not relevant".
- counts are digits; findings are the polyps (the dye patch is not counted).
"""

from __future__ import annotations

import json
import math
import random
import string
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import ImageDraw

from vlmflow.core.io import atomic_write
from vlmflow.data.kvasir_questions import (
    Q_ABNORMALITY,
    Q_ABNORMALITY_COLOUR,
    Q_ABNORMALITY_WHERE,
    Q_BOX,
    Q_EASY,
    Q_INSTRUMENT,
    Q_INSTRUMENT_WHERE,
    Q_LANDMARK,
    Q_LANDMARK_COLOUR,
    Q_LANDMARK_WHERE,
    Q_N_FINDINGS,
    Q_N_INSTRUMENTS,
    Q_N_POLYPS,
    Q_PROCEDURE,
    Q_REMOVED,
    Q_SIZE,
    Q_TEXT,
    Q_TYPE,
    QUESTIONS,
)
from vlmflow.synth import scenes

QUESTIONS_PER_IMAGE = 6

PROCEDURES = {
    "colonoscopy": ((225, 140, 150), "cecum"),
    "gastroscopy": ((220, 170, 100), "pylorus"),
}
# size bucket -> polyp radius range as a fraction of the image side
SIZES: dict[str, tuple[float, float]] = {
    "<5mm": (0.035, 0.045),
    "5-10mm": (0.055, 0.07),
    "11-20mm": (0.085, 0.105),
    ">20mm": (0.125, 0.15),
}
EASY_SIZES = frozenset({"11-20mm", ">20mm"})
POLYP_TYPES: tuple[str, ...] = ("paris is", "paris ip", "paris iia")
INSTRUMENTS: dict[str, float] = {"tube": 0.08, "biopsy forceps": 0.035}  # kind -> width fraction
POLYP_RGB = (175, 30, 45)
WHITE_RGB = (245, 242, 238)
DYE_RGB = (50, 90, 200)
INSTRUMENT_RGB = (175, 175, 180)
BOX_GREEN = (40, 200, 60)


@dataclass(frozen=True)
class Polyp:
    x: float
    y: float
    radius: float
    size: str
    kind: str
    highlight: bool


@dataclass(frozen=True)
class Instrument:
    kind: str
    start: tuple[float, float]
    end: tuple[float, float]


@dataclass(frozen=True)
class Frame:
    procedure: str
    polyps: tuple[Polyp, ...]
    landmark: tuple[float, float, float] | None  # x, y, radius
    dye: tuple[float, float, float] | None
    instruments: tuple[Instrument, ...]
    text: str | None
    box: bool


def _place(
    rng: random.Random, size: int, radius: float, taken: list[tuple[float, float, float]]
) -> tuple[float, float] | None:
    """A centre in the middle of the field not overlapping `taken` circles, or None."""
    for _ in range(50):
        x, y = rng.uniform(0.25, 0.75) * size, rng.uniform(0.25, 0.75) * size
        if all(math.hypot(x - tx, y - ty) > radius + tr + 2 for tx, ty, tr in taken):
            taken.append((x, y, radius))
            return x, y
    return None


def _frame(rng: random.Random, size: int) -> Frame:
    procedure = rng.choice(sorted(PROCEDURES))
    taken: list[tuple[float, float, float]] = []
    landmark = None
    if rng.random() < 0.35:
        r = rng.uniform(0.08, 0.12) * size
        if (xy := _place(rng, size, r, taken)) is not None:
            landmark = (*xy, r)
    polyps = []
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        bucket = rng.choice(sorted(SIZES))
        r = rng.uniform(*SIZES[bucket]) * size
        if (xy := _place(rng, size, r, taken)) is not None:
            polyps.append(Polyp(*xy, r, bucket, rng.choice(POLYP_TYPES), rng.random() < 0.4))
    dye = None
    if not polyps and rng.random() < 0.4:
        r = rng.uniform(0.06, 0.1) * size
        if (xy := _place(rng, size, r, taken)) is not None:
            dye = (*xy, r)
    instruments = []
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        edge = rng.choice(("bottom", "right", "top"))
        t = rng.uniform(0.3, 0.7) * size
        start = {"bottom": (t, size), "right": (size, t), "top": (t, 0.0)}[edge]
        end = (rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.7) * size)
        instruments.append(Instrument(rng.choice(sorted(INSTRUMENTS)), start, end))
    text = None
    if rng.random() < 0.5:
        text = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2010, 2019)}"
    return Frame(procedure, tuple(polyps), landmark, dye, tuple(instruments), text, rng.random() < 0.4)


def _draw(frame: Frame, size: int) -> bytes:
    image, draw = scenes.new_canvas(size, (0, 0, 0))
    field, _ = PROCEDURES[frame.procedure]
    r = 0.47 * size
    draw.ellipse((size / 2 - r, size / 2 - r, size / 2 + r, size / 2 + r), fill=field)
    if frame.landmark is not None:
        x, y, lr = frame.landmark
        draw.ellipse((x - lr, y - lr, x + lr, y + lr), outline=WHITE_RGB, width=max(2, round(size * 0.03)))
    if frame.dye is not None:
        x, y, dr = frame.dye
        draw.ellipse((x - dr, y - dr * 0.7, x + dr, y + dr * 0.7), fill=DYE_RGB)
    for p in frame.polyps:
        _draw_polyp(draw, p)
    for inst in frame.instruments:
        _draw_instrument(draw, inst, size)
    if frame.text is not None:
        scenes.draw_text_centred(
            draw,
            frame.text,
            (size * 0.2, size * 0.05),
            scenes.font(max(6, round(size * 0.055))),
            WHITE_RGB,
        )
    if frame.box:
        s = size * 0.2
        draw.rectangle(
            (0, size - s, s, size - 1),
            fill=(0, 0, 0),
            outline=BOX_GREEN,
            width=max(1, round(size * 0.01)),
        )
        draw.rectangle((s * 0.3, size - s * 0.7, s * 0.7, size - s * 0.3), fill=BOX_GREEN)
    return scenes.jpeg_bytes(image)


def _draw_polyp(draw: ImageDraw.ImageDraw, p: Polyp) -> None:
    ry = p.radius * (0.55 if p.kind == "paris iia" else 1.0)
    if p.kind == "paris ip":  # a stalk below the head
        w = p.radius * 0.3
        draw.rectangle((p.x - w, p.y, p.x + w, p.y + p.radius * 1.6), fill=POLYP_RGB)
    draw.ellipse((p.x - p.radius, p.y - ry, p.x + p.radius, p.y + ry), fill=POLYP_RGB)
    if p.highlight:
        h = p.radius * 0.35
        hx, hy = p.x - p.radius * 0.3, p.y - ry * 0.3
        draw.ellipse((hx - h, hy - h * 0.7, hx + h, hy + h * 0.7), fill=WHITE_RGB)


def _draw_instrument(draw: ImageDraw.ImageDraw, inst: Instrument, size: int) -> None:
    width = max(2, round(INSTRUMENTS[inst.kind] * size))
    draw.line([inst.start, inst.end], fill=INSTRUMENT_RGB, width=width)
    if inst.kind == "biopsy forceps":  # two open jaws at the tip
        (x0, y0), (x1, y1) = inst.start, inst.end
        angle = math.atan2(y1 - y0, x1 - x0)
        jaw = size * 0.06
        for da in (-0.5, 0.5):
            tip = (x1 + jaw * math.cos(angle + da), y1 + jaw * math.sin(angle + da))
            draw.line([(x1, y1), tip], fill=INSTRUMENT_RGB, width=width)


def _cells(points: list[tuple[float, float]], size: int) -> str:
    return "; ".join(sorted({scenes.grid_name(x, y, size) for x, y in points})) or "none"


def _instrument_points(inst: Instrument, size: int) -> list[tuple[float, float]]:
    """Points along the shaft inside the image, to list every grid cell it crosses."""
    (x0, y0), (x1, y1) = inst.start, inst.end
    pts = [(x0 + (x1 - x0) * t / 20, y0 + (y1 - y0) * t / 20) for t in range(21)]
    return [(x, y) for x, y in pts if 0 <= x < size and 0 <= y < size]


def answers(frame: Frame, size: int) -> dict[str, str]:
    """The answer to every question for one frame, derived from what was drawn."""
    polyps = frame.polyps
    _, landmark_name = PROCEDURES[frame.procedure]
    kinds = [k for k in INSTRUMENTS if any(i.kind == k for i in frame.instruments)]
    sizes = [s for s in SIZES if any(p.size == s for p in polyps)]
    types = [t for t in POLYP_TYPES if any(p.kind == t for p in polyps)]
    colours = ["red"] + (["white"] if any(p.highlight for p in polyps) else [])
    if polyps:
        removed = "no"
    else:
        removed = "yes" if frame.dye is not None else "not relevant"
    return {
        Q_ABNORMALITY: "polyp" if polyps else "no",
        Q_LANDMARK: landmark_name if frame.landmark else "no",
        Q_INSTRUMENT: "; ".join(kinds) or "no",
        Q_REMOVED: removed,
        Q_N_FINDINGS: str(len(polyps)),
        Q_N_INSTRUMENTS: str(len(frame.instruments)),
        Q_N_POLYPS: str(len(polyps)),
        Q_BOX: "yes" if frame.box else "no",
        Q_TEXT: "yes" if frame.text else "no",
        Q_EASY: ("yes" if EASY_SIZES & set(sizes) else "no") if polyps else "not relevant",
        Q_ABNORMALITY_COLOUR: "; ".join(colours) if polyps else "none",
        Q_LANDMARK_COLOUR: "white" if frame.landmark else "none",
        Q_SIZE: "; ".join(sizes) or "not relevant",
        Q_TYPE: "; ".join(types) or "none",
        Q_PROCEDURE: frame.procedure,
        Q_ABNORMALITY_WHERE: _cells([(p.x, p.y) for p in polyps], size),
        Q_LANDMARK_WHERE: _cells([frame.landmark[:2]] if frame.landmark else [], size),
        Q_INSTRUMENT_WHERE: _cells([pt for inst in frame.instruments for pt in _instrument_points(inst, size)], size),
    }


def _img_id(rng: random.Random) -> str:
    """A cuid-like id such as the real set's "cl8k2u1pm1dgd0832bmj7dtkp"."""
    return "cl" + "".join(rng.choices(string.ascii_lowercase + string.digits, k=23))


IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCHEMA = pa.schema(
    [
        ("image", IMAGE_TYPE),
        ("source", pa.string()),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("img_id", pa.string()),
    ],
    # The Hugging Face `datasets` features, so `load_dataset` decodes `image` as an Image.
    metadata={
        "huggingface": json.dumps(
            {
                "info": {
                    "features": {
                        "image": {"_type": "Image"},
                        "source": {"dtype": "string", "_type": "Value"},
                        "question": {"dtype": "string", "_type": "Value"},
                        "answer": {"dtype": "string", "_type": "Value"},
                        "img_id": {"dtype": "string", "_type": "Value"},
                    }
                }
            }
        )
    },
)


def write_kvasir(out_path: Path, split: str, n_images: int, seed: int, image_size: int = 224) -> None:
    """Write one Kvasir-VQA parquet file (one row per image-question pair)."""
    scenes.check_split(split)
    rng = scenes.make_rng(seed, "kvasir", split)
    rows: dict[str, list] = {name: [] for name in SCHEMA.names}
    for _ in range(n_images):
        img_id = _img_id(rng)
        frame = _frame(rng, image_size)
        image = {"bytes": _draw(frame, image_size), "path": f"{img_id}.jpg"}
        source = "kvasir-instrument" if frame.instruments else "hyperkvasir"
        qa = answers(frame, image_size)
        for question in sorted(rng.sample(QUESTIONS, QUESTIONS_PER_IMAGE), key=QUESTIONS.index):
            for name, value in zip(SCHEMA.names, (image, source, question, qa[question], img_id), strict=True):
                rows[name].append(value)
    table = pa.Table.from_pydict(rows, schema=SCHEMA)
    with atomic_write(out_path, "wb") as handle:
        pq.write_table(table, handle)
