"""`diffsvc eval`: figures that say how good a checkpoint and a conversion are.

metrics.py (the formulas), reconstruction.py (a singer's own pieces, also for training's
validation: `reconstruction_figures`), pitch_track.py, speaker.py (optional extra
`diffsvc[eval]`), runner.py (checkpoints x pieces x songs), report.py (table, JSON, CSV, PNG).
"""
