"""A small built-in synthesiser, so that ``--format wav`` (and the web page's player) works where FluidSynth
and a General MIDI soundfont are not installed.

Each note is a sum of harmonics (additive synthesis) shaped by an ADSR envelope; the harmonics and the
envelope depend on the General MIDI program's family (piano, organ, strings, brass, ...), so that parts
played by different instruments sound different. Struck and plucked families fade while the key is held,
with their upper harmonics fading faster; drums are short noise bursts. Notes are summed (polyphony) into
one mono track. It sounds like a 1980s home keyboard, not a soundfont: enough to hear a piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pretty_midi

RATE = 22050  # samples per second: the harmonics that matter for hearing a piece sit well below 11 kHz


@dataclass(frozen=True)
class Voice:
    """How one family of instruments sounds. The fundamental is always the loudest harmonic, so a note's
    spectrum peaks at its pitch."""

    harmonics: tuple[float, ...]  # amplitude of the 1st, 2nd, ... harmonic
    attack: float = 0.01  # seconds from silence to full level
    decay: float = 0.1  # seconds from full level down to the sustain level
    sustain: float = 0.8  # level held while the key is down
    release: float = 0.1  # seconds from the level at key-up to silence
    ring: float = 0.0  # struck or plucked (> 0): the level halves every `ring` seconds while held (at A4)


PLUCK = Voice((1.0, 0.6, 0.35, 0.25, 0.15, 0.1), attack=0.004, decay=0.0, sustain=1.0, release=0.1, ring=0.45)
PAD = Voice((1.0, 0.3, 0.15, 0.07), attack=0.25, decay=0.2, sustain=0.85, release=0.35)

# one voice per General MIDI family: programs 0-7 pianos, 8-15 chromatic percussion, 16-23 organs, ...
FAMILIES: tuple[Voice, ...] = (
    Voice((1.0, 0.5, 0.3, 0.2, 0.12, 0.08, 0.05), attack=0.004, decay=0.0, sustain=1.0, release=0.15, ring=0.6),
    Voice((1.0, 0.0, 0.25, 0.0, 0.1), attack=0.002, decay=0.0, sustain=1.0, release=0.2, ring=0.35),
    Voice((1.0, 0.8, 0.6, 0.3, 0.3, 0.2, 0.1, 0.1), attack=0.01, decay=0.05, sustain=0.9, release=0.06),
    PLUCK,
    Voice((1.0, 0.45, 0.2, 0.1), attack=0.006, decay=0.0, sustain=1.0, release=0.08, ring=0.8),
    Voice((1.0, 0.55, 0.4, 0.3, 0.22, 0.16, 0.12, 0.09), attack=0.08, decay=0.1, sustain=0.85, release=0.2),
    Voice((1.0, 0.4, 0.2, 0.1, 0.05), attack=0.08, decay=0.1, sustain=0.9, release=0.2),
    Voice((1.0, 0.8, 0.65, 0.5, 0.4, 0.3, 0.2, 0.15), attack=0.04, decay=0.08, sustain=0.8, release=0.12),
    Voice((1.0, 0.1, 0.55, 0.08, 0.35, 0.06, 0.2), attack=0.03, decay=0.05, sustain=0.85, release=0.1),
    Voice((1.0, 0.25, 0.08, 0.03), attack=0.05, decay=0.05, sustain=0.9, release=0.12),
    Voice((1.0, 0.5, 0.33, 0.25, 0.2, 0.17, 0.14, 0.12), attack=0.01, decay=0.05, sustain=0.9, release=0.08),
    PAD,
    PAD,
    PLUCK,
    Voice((1.0, 0.3, 0.2, 0.1), attack=0.002, decay=0.0, sustain=1.0, release=0.1, ring=0.2),
    PAD,
)
DRUM_RING = 0.05  # seconds for a drum hit's level to halve
DRUM_LENGTH = 0.4  # seconds a drum hit lasts at most
TAIL = max(v.release for v in FAMILIES)  # seconds of sound after the last note ends


def voice_for(program: int) -> Voice:
    """The voice of a General MIDI program (0-127)."""
    return FAMILIES[min(max(program, 0), 127) // 8]


def frequency(pitch: int) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


def envelope(voice: Voice, pitch: int, held: float, t: np.ndarray) -> np.ndarray:
    """The level at times ``t`` (seconds from the note's start) of a note held for ``held`` seconds: attack,
    decay, sustain (fading for struck voices, faster for high notes) while held, then a linear release."""
    attack = min(voice.attack, held)
    level = np.interp(t, [0.0, attack, attack + max(voice.decay, 1e-6)], [0.0, 1.0, voice.sustain])
    if voice.ring:
        half_life = voice.ring * 2.0 ** ((69 - pitch) / 24)  # low strings ring longer
        level = level * 0.5 ** (t / half_life)
    at_release = float(np.interp(held, t, level)) if len(t) else 0.0
    fading = t >= held
    level[fading] = at_release * np.clip(1.0 - (t[fading] - held) / voice.release, 0.0, 1.0)
    return level


def tone(voice: Voice, pitch: int, t: np.ndarray, rate: int) -> np.ndarray:
    """The voice's harmonics at ``pitch`` (those below the Nyquist frequency); for struck voices the upper
    harmonics fade faster than the fundamental, as a string's do. sin(kx) comes from the recurrence
    sin((k+1)x) = 2 cos(x) sin(kx) - sin((k-1)x): one sine and one cosine per note instead of one sine per
    harmonic, three times faster."""
    f0 = frequency(pitch)
    x = 2 * np.pi * f0 * t
    twice_cos, before, current = 2 * np.cos(x), np.zeros_like(t), np.sin(x)
    out = np.zeros_like(t)
    for k, amplitude in enumerate(voice.harmonics, start=1):
        if k * f0 >= 0.45 * rate:
            break
        if amplitude:
            fade = 0.5 ** (t * (k - 1) / (4 * voice.ring)) if voice.ring and k > 1 else 1.0
            out += amplitude * fade * current
        before, current = current, twice_cos * current - before
    return out


def loudness(velocity: int) -> float:
    """Velocity 1-127 to an amplitude: a soft curve, so that dynamics are heard but quiet notes stay audible."""
    return (max(1, min(velocity, 127)) / 127) ** 1.5


def note_audio(voice: Voice, note: pretty_midi.Note, rate: int) -> np.ndarray:
    held = max(note.end - note.start, 1.0 / rate)
    t = np.arange(int((held + voice.release) * rate)) / rate
    return loudness(note.velocity) * envelope(voice, note.pitch, held, t) * tone(voice, note.pitch, t, rate)


def drum_audio(note: pretty_midi.Note, rate: int, noise: np.random.Generator) -> np.ndarray:
    """A drum hit: noise that dies away, brighter for higher GM drum keys (cymbals) than lower ones (kicks)."""
    t = np.arange(int(DRUM_LENGTH * rate)) / rate
    hit = noise.standard_normal(len(t))
    smoothing = max(1, int(8 * (1 - (note.pitch - 35) / 46)))  # a moving average darkens low drums
    hit = np.convolve(hit, np.ones(smoothing) / smoothing, mode="same")
    return 0.5 * loudness(note.velocity) * 0.5 ** (t / DRUM_RING) * hit


def render(midi: pretty_midi.PrettyMIDI, rate: int = RATE) -> np.ndarray:
    """The piece as mono float audio at ``rate``, not normalised: every note of every instrument summed, from
    time 0 to the last note's end plus the longest release."""
    end = midi.get_end_time()
    out = np.zeros(int((end + TAIL) * rate) + 1)
    noise = np.random.default_rng(0)  # the same piece always gives the same file
    for instrument in midi.instruments:
        voice = voice_for(instrument.program)
        for note in instrument.notes:
            audio = drum_audio(note, rate, noise) if instrument.is_drum else note_audio(voice, note, rate)
            start = int(round(note.start * rate))
            stop = min(len(out), start + len(audio))
            if stop > start:
                out[start:stop] += audio[: stop - start]
    return out
