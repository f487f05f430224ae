"""Running a plan: the executor that takes it step by step and checkpoints each one, the
handling of interrupts and pauses, the child processes steps start and their guard."""
