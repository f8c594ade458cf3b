"""Released checkpoints: a catalogue, downloads, and their official evaluation."""
