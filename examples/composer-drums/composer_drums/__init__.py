"""composer-drums: a third-party composer plugin for drum patterns.

Registers the ``drums`` encoder (Magenta Drums RNN's encoding), the ``drum-files`` corpus source (the
drum tracks of MIDI files) and the ``mid`` writer for the ``drums`` modality."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from composer import CorpusSource, Writer, hookimpl

from composer_drums import io
from composer_drums.encoder import DrumsEncoder

MODALITY = "drums"
__all__ = ["DrumsEncoder", "MODALITY"]


@hookimpl
def register_encoders(register: Callable[[Any], None]) -> None:
    register(DrumsEncoder)


@hookimpl
def register_corpora(register: Callable[[Any], None]) -> None:
    register(
        CorpusSource(
            name="drum-files",
            modality=MODALITY,
            load=io.read_drum_file,
            suffixes=io.SUFFIXES,
            description="drum tracks (MIDI channel 10) of MIDI files (.mid, .midi)",
        )
    )


@hookimpl
def register_writers(register: Callable[[Any], None]) -> None:
    register(Writer("mid", MODALITY, ".mid", io.write_mid, description="Standard MIDI file, drums on channel 10"))
