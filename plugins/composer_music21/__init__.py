"""music21 helpers that the built-in MIDI and text plugins share: finding and listing music21's corpus
(:mod:`composer_music21.corpus`) and the parts of scores as PrettyMIDI instruments
(:mod:`composer_music21.scores`).

Not a plugin: it registers nothing. Importing it is cheap: music21 is imported inside the functions that
use it."""
