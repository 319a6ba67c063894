"""Output formats for pieces: MIDI, MusicXML, a piano-roll PNG and WAV audio."""

from __future__ import annotations

import importlib.util
import os
import re
import wave
from pathlib import Path

import numpy as np
import pretty_midi

from composer import ComposerError, WriteSkipped
from composer_midi import synth
from composer_midi.scores import midi_to_score

SOUNDFONT_FOLDERS = (
    "/usr/share/sounds/sf2",
    "/usr/share/soundfonts",
    "/usr/local/share/soundfonts",
    "/opt/homebrew/share/soundfonts",
)
PREFERRED_SOUNDFONT = "FluidR3_GM.sf2"
SAMPLE_RATE = 44100  # FluidSynth's; the built-in synthesiser writes at synth.RATE
MISSING_SOUNDFONT = "COMPOSER_SOUNDFONT names no file: {}; unset it to use the built-in synthesiser"


def require_notes(item: pretty_midi.PrettyMIDI) -> None:
    """Refuse a piece without a note (e.g. one that ended at once): an empty file is no output."""
    if not any(inst.notes for inst in item.instruments):
        raise WriteSkipped("the piece has no notes")


def write_mid(item: pretty_midi.PrettyMIDI, path: Path) -> None:
    require_notes(item)
    item.write(str(path))


def write_musicxml(item: pretty_midi.PrettyMIDI, path: Path) -> None:
    """A score (see :func:`~composer_midi.scores.midi_to_score`) titled with the item's ``title`` (the style
    that generated it), else the file's name. The same piece gives the same bytes: parts have fixed ids and
    the encoding date, which would change every day, is left out."""
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    require_notes(item)
    data = GeneralObjectExporter(midi_to_score(item, getattr(item, "title", "") or path.stem)).parse()
    path.write_bytes(re.sub(rb"\s*<encoding-date>[^<]*</encoding-date>", b"", data, count=1))


def png_available() -> str | None:
    if importlib.util.find_spec("matplotlib") is None:
        return "the png format needs matplotlib: pip install 'lstm-composer[plot]'"
    return None


def write_png(item: pretty_midi.PrettyMIDI, path: Path) -> None:
    """A piano roll: one bar per note, a colour per instrument, time in seconds across."""
    require_notes(item)
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


def fluidsynth_installed() -> bool:
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth; importing it also loads libfluidsynth)
    except (ImportError, OSError):
        return False
    return True


def synthesizer() -> str:
    """``"fluidsynth"`` where pyfluidsynth, libfluidsynth and a General MIDI soundfont are installed, else
    ``"built-in"`` (:mod:`composer_midi.synth`), so that WAV output works everywhere."""
    return "fluidsynth" if find_soundfont() is not None and fluidsynth_installed() else "built-in"


def wav_available() -> str | None:
    """Always available, except where the user named a soundfont that is not there: falling back to the
    built-in synthesiser then would hide their mistake."""
    chosen = os.environ.get("COMPOSER_SOUNDFONT")
    return MISSING_SOUNDFONT.format(chosen) if chosen and not Path(chosen).is_file() else None


def write_wav(item: pretty_midi.PrettyMIDI, path: Path) -> None:
    """Mono 16-bit audio, peaks normalized: FluidSynth with a soundfont where installed, else the built-in
    synthesiser."""
    missing = wav_available()
    if missing:
        raise ComposerError(missing)
    require_notes(item)
    if synthesizer() == "fluidsynth":
        rate, audio = SAMPLE_RATE, item.fluidsynth(fs=SAMPLE_RATE, sf2_path=str(find_soundfont()))
    else:
        rate, audio = synth.RATE, synth.render(item)
    write_samples(audio, rate, path)


def write_samples(audio: np.ndarray, rate: int, path: Path) -> None:
    """Float audio as a mono 16-bit WAV file, scaled so that its peak sits at 90% of full scale."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0:
        audio = audio * (0.9 / peak)
    samples = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
