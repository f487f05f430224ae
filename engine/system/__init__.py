"""The machine the engine runs on: the child processes it starts and the guard that ends them
with it, interrupts and pauses of this process, and who is running it (user, host)."""
