"""Data: one sample type, three sources (the seed's layout, compose, synth), one loader."""
