"""Music: notes as numpy arrays (``piece``), corpora of MIDI/MusicXML/ABC files (``corpus``),
composing with a trained run (``compose``), a terminal piano roll (``roll``) and the
statistics that compare compositions with real pieces (``stats``).

Importing this package imports nothing heavy: symusic and music21 are loaded inside the
functions that read or write files, and torch only where a model runs.
"""
