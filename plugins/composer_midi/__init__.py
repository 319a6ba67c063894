"""The built-in MIDI plugin: melody, polyphony, performance and satb encoders; music21's corpus and MIDI and
score files as corpora; MIDI, MusicXML, piano-roll PNG and WAV output; the ``harmonize``, ``reharmonize``
and ``play`` commands.

Importing it is cheap: music21 and matplotlib are imported where they are used."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from composer import CorpusSource, Writer, hookimpl
from composer_midi import corpora, writers
from composer_midi.melody import MelodyEncoder
from composer_midi.performance import PerformanceEncoder
from composer_midi.polyphony import PolyphonyEncoder
from composer_midi.satb import SatbEncoder

MODALITY = "midi"


@hookimpl
def register_encoders(register: Callable[[Any], None]) -> None:
    register(MelodyEncoder)
    register(PolyphonyEncoder)
    register(PerformanceEncoder)
    register(SatbEncoder)


@hookimpl
def register_corpora(register: Callable[[Any], None]) -> None:
    register(
        CorpusSource(
            name=corpora.SOURCE,
            modality=MODALITY,
            load=corpora.load_music21,
            list=corpora.list_music21,
            description="the corpus music21 ships; collections: " + ", ".join([corpora.ALL, *corpora.collections()]),
        )
    )
    register(
        CorpusSource(
            name="midi-files",
            modality=MODALITY,
            load=corpora.read_midi,
            suffixes=corpora.MIDI_SUFFIXES,
            description="MIDI files (.mid, .midi)",
        )
    )
    register(
        CorpusSource(
            name="score-files",
            modality=MODALITY,
            load=corpora.read_score,
            suffixes=corpora.SCORE_SUFFIXES,
            description="scores read by music21 (MusicXML, Humdrum, ABC); an ABC book gives one piece per tune",
        )
    )


@hookimpl
def register_commands(cli: Any) -> None:
    from composer_midi.commands import harmonize, play, reharmonize

    cli.add_command(harmonize)
    cli.add_command(reharmonize)
    cli.add_command(play)


@hookimpl
def register_writers(register: Callable[[Any], None]) -> None:
    register(Writer("mid", MODALITY, ".mid", writers.write_mid, description="Standard MIDI file"))
    register(Writer("musicxml", MODALITY, ".musicxml", writers.write_musicxml, description="MusicXML score (music21)"))
    register(
        Writer("png", MODALITY, ".png", writers.write_png, writers.png_available, description="piano roll (matplotlib)")
    )
    register(
        Writer("wav", MODALITY, ".wav", writers.write_wav, writers.wav_available,
               description="audio (FluidSynth with a GM soundfont where installed, else a built-in synthesiser)")
    )
