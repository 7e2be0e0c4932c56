"""Worker processes: run tasks, or host one actor."""
