"""Output formats for pieces: MIDI, MusicXML, a piano-roll PNG and WAV audio."""

from __future__ import annotations

import importlib.util
import os
import wave
from pathlib import Path

import numpy as np
import pretty_midi

from composer import ComposerError
from composer_midi.scores import midi_to_score

SOUNDFONT_FOLDERS = (
    "/usr/share/sounds/sf2",
    "/usr/share/soundfonts",
    "/usr/local/share/soundfonts",
    "/opt/homebrew/share/soundfonts",
)
PREFERRED_SOUNDFONT = "FluidR3_GM.sf2"
SAMPLE_RATE = 44100
NO_FLUIDSYNTH = (
    "the wav format needs FluidSynth: pip install 'lstm-composer[audio]' (pyfluidsynth) and install "
    "libfluidsynth and the fluid-soundfont-gm soundfont"
)
NO_SOUNDFONT = (
    "the wav format needs a General MIDI soundfont: install fluid-soundfont-gm or set COMPOSER_SOUNDFONT to "
    "an .sf2 file"
)


def write_mid(item: pretty_midi.PrettyMIDI, path: Path) -> None:
    item.write(str(path))


def write_musicxml(item: pretty_midi.PrettyMIDI, path: Path) -> None:
    midi_to_score(item).write("musicxml", fp=str(path))


def png_available() -> str | None:
    if importlib.util.find_spec("matplotlib") is None:
        return "the png format needs matplotlib: pip install 'lstm-composer[plot]'"
    return None


def write_png(item: pretty_midi.PrettyMIDI, path: Path) -> None:
    """A piano roll: one bar per note, a colour per instrument, time in seconds across."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    parts = [inst for inst in item.instruments if inst.notes]
    end = item.get_end_time()
    fig = Figure(figsize=(min(max(6.0, 2.0 + end / 4.0), 30.0), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for index, inst in enumerate(parts):
        ax.barh(
            [n.pitch for n in inst.notes],
            [n.end - n.start for n in inst.notes],
            left=[n.start for n in inst.notes],
            height=0.8,
            color=f"C{index % 10}",
            label=inst.name or pretty_midi.program_to_instrument_name(inst.program),
        )
    pitches = [n.pitch for inst in parts for n in inst.notes]
    if pitches:
        low, high = min(pitches) - 2, max(pitches) + 2
        ax.set_ylim(low, high)
        octaves = range((low // 12 + 1) * 12, high + 1, 12)
        ax.set_yticks(list(octaves), [pretty_midi.note_number_to_name(c) for c in octaves])
    ax.set_xlim(0, max(end, 1.0))
    ax.set_xlabel("seconds")
    ax.grid(axis="y", alpha=0.3)
    if len(parts) > 1:
        ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)


def find_soundfont() -> Path | None:
    """``COMPOSER_SOUNDFONT`` if set, else FluidR3_GM or the first ``.sf2`` in the usual folders."""
    chosen = os.environ.get("COMPOSER_SOUNDFONT")
    if chosen:
        return Path(chosen) if Path(chosen).is_file() else None
    found = [path for folder in SOUNDFONT_FOLDERS for path in sorted(Path(folder).glob("*.sf2"))]
    return next((p for p in found if p.name == PREFERRED_SOUNDFONT), found[0] if found else None)


def wav_available() -> str | None:
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth; importing it also loads libfluidsynth)
    except (ImportError, OSError):
        return NO_FLUIDSYNTH
    return NO_SOUNDFONT if find_soundfont() is None else None


def write_wav(item: pretty_midi.PrettyMIDI, path: Path) -> None:
    """Mono 16-bit audio synthesized by FluidSynth, peaks normalized."""
    soundfont = find_soundfont()
    if soundfont is None:
        raise ComposerError(NO_SOUNDFONT)
    audio = item.fluidsynth(fs=SAMPLE_RATE, sf2_path=str(soundfont))
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0:
        audio = audio * (0.9 / peak)
    samples = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
