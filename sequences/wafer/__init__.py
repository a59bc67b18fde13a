"""One wafer through a recipe: its state machine, the runner that owns its step in
progress, the wafer journal that persists every move before the next command, and the
judgment of a step's results. What each step does on its tool is its kind's
(``sequences.kinds``)."""
